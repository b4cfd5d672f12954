"""Rule trees checked for types and names once, then turned into closures over one row.

A decision's facts are one flat list (``FactsLayout.row``): the transaction's fields, the
model's score and every feature value, each at a fixed position. A rule becomes nested
closures reading positions of that list with ``operator.itemgetter``, so evaluating it
costs a few hundred nanoseconds and nothing of the rule text is looked at again (the
20-rule benchmark: ``python -m service.benchmarks.rules_bench``).

Types are checked at load, not per decision: numbers compare with numbers, text with text
(``==``, ``!=``, ``in``), ``and``/``or``/``not`` take conditions. A division by zero gives
NaN (every comparison with it is false but ``!=``) rather than failing the payment.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.rules.syntax import (
    Binary,
    Boolean,
    Membership,
    Name,
    Node,
    Number,
    RuleSyntaxError,
    Text,
    Unary,
)

Kind = Literal["number", "text", "condition"]
Evaluator = Callable[[Sequence[Any]], Any]

# The transaction's fields a rule may name, and the model's score, before the features.
TRANSACTION_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("amount", "number"),
    ("customer_id", "text"),
    ("terminal_id", "text"),
    ("currency", "text"),
    ("score", "number"),
)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(frozen=True)
class FactsLayout:
    """Where each name sits in a decision's row of facts: the transaction's fields and the
    score, then the model's features in the model's order."""

    feature_names: tuple[str, ...]

    @property
    def positions(self) -> dict[str, tuple[int, Kind]]:
        named: list[tuple[str, Kind]] = [
            *TRANSACTION_FIELDS,
            *((name, "number") for name in self.feature_names),
        ]
        return {name: (i, kind) for i, (name, kind) in enumerate(named)}

    @staticmethod
    def row(
        amount: float,
        customer_id: str,
        terminal_id: str,
        currency: str | None,
        score: float,
        feature_values: list[float],
    ) -> list[Any]:
        return [amount, customer_id, terminal_id, currency or "", score, *feature_values]


class _Compiler:
    def __init__(self, layout: FactsLayout, source: str, known: frozenset[str]) -> None:
        self._positions = layout.positions
        self._source = source
        self._known = known

    def _error(self, message: str, node: Node) -> RuleSyntaxError:
        return RuleSyntaxError(message, node.line, node.column, self._source)

    def compile(self, node: Node) -> tuple[Evaluator, Kind, Any]:
        """The node's evaluator, its kind, and its value when it is a constant (else a
        sentinel): constants are folded so ``amount > 5000`` reads one position only."""
        if isinstance(node, Number):
            value: Any = node.value
            return (lambda _r, v=value: v), "number", value
        if isinstance(node, Text):
            value = node.value
            return (lambda _r, v=value: v), "text", value
        if isinstance(node, Boolean):
            value = node.value
            return (lambda _r, v=value: v), "condition", value
        if isinstance(node, Name):
            found = self._positions.get(node.name)
            if found is None:
                if node.name in self._known:
                    raise self._error(
                        f"feature {node.name} is not an input of the model being served", node
                    )
                raise self._error(f"unknown name {node.name!r}", node)
            position, kind = found
            return operator.itemgetter(position), kind, _VARIABLE
        if isinstance(node, Unary):
            inner, kind, constant = self.compile(node.operand)
            if node.op == "-":
                self._want(kind, "number", node.operand, "'-'")
                if constant is not _VARIABLE:
                    return (lambda _r, v=-constant: v), "number", -constant
                return (lambda r: -inner(r)), "number", _VARIABLE
            self._want(kind, "condition", node.operand, "'not'")
            return (lambda r: not inner(r)), "condition", _VARIABLE
        if isinstance(node, Membership):
            subject, kind, _ = self.compile(node.subject)
            wanted: Kind = "number" if isinstance(node.choices[0], Number) else "text"
            for choice in node.choices:
                if (isinstance(choice, Number) and wanted != "number") or (
                    isinstance(choice, Text) and wanted != "text"
                ):
                    raise self._error("a list after 'in' holds values of one kind", choice)
            self._want(kind, wanted, node.subject, "'in' with this list")
            choices = frozenset(c.value for c in node.choices)
            return (lambda r: subject(r) in choices), "condition", _VARIABLE
        return self._binary(node)

    def _binary(self, node: Binary) -> tuple[Evaluator, Kind, Any]:
        left, left_kind, left_value = self.compile(node.left)
        right, right_kind, right_value = self.compile(node.right)
        op = node.op
        if op in ("and", "or"):
            self._want(left_kind, "condition", node.left, f"'{op}'")
            self._want(right_kind, "condition", node.right, f"'{op}'")
            if op == "and":
                return (lambda r: left(r) and right(r)), "condition", _VARIABLE
            return (lambda r: left(r) or right(r)), "condition", _VARIABLE
        if op in _COMPARE:
            if op in ("==", "!="):
                if left_kind != right_kind:
                    raise self._error(f"cannot compare {left_kind} with {right_kind}", node)
            else:
                self._want(left_kind, "number", node.left, f"'{op}'")
                self._want(right_kind, "number", node.right, f"'{op}'")
            compare = _COMPARE[op]
            if right_value is not _VARIABLE and left_value is _VARIABLE:
                return (lambda r, c=right_value: compare(left(r), c)), "condition", _VARIABLE
            return (lambda r: compare(left(r), right(r))), "condition", _VARIABLE
        self._want(left_kind, "number", node.left, f"'{op}'")
        self._want(right_kind, "number", node.right, f"'{op}'")
        if op == "/":
            return (lambda r: _divide(left(r), right(r))), "number", _VARIABLE
        arithmetic = _ARITHMETIC[op]
        return (lambda r: arithmetic(left(r), right(r))), "number", _VARIABLE

    def _want(self, kind: Kind, wanted: Kind, node: Node, where: str) -> None:
        if kind != wanted:
            article = "a condition" if wanted == "condition" else f"a {wanted}"
            raise self._error(f"{where} needs {article}, not a {kind}", node)


_VARIABLE = object()


def _divide(a: float, b: float) -> float:
    return a / b if b else math.nan


def compile_condition(
    node: Node, layout: FactsLayout, source: str = "rules", known: frozenset[str] = frozenset()
) -> Evaluator:
    """A closure giving the condition's truth for a row of facts laid out as ``layout``.

    ``known``: feature names that exist but may not be inputs of this model (they get a
    clearer error than an unknown name). Raises :class:`RuleSyntaxError` for a name that
    is not in the layout or a value of the wrong kind.
    """
    evaluator, kind, _ = _Compiler(layout, source, known).compile(node)
    if kind != "condition":
        raise RuleSyntaxError(
            f"a rule needs a condition, not a {kind}", node.line, node.column, source
        )
    return evaluator
