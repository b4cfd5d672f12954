"""A rule set: the rules of one file, checked, versioned, compiled once per model layout.

The version is a digest of the rules as parsed (names, conditions, actions), so a comment
or blank line changes nothing, while any change of meaning gives a new version; every
decision records the version it was decided under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.definitions import DEFAULT_FEATURES
from models.rules.compiled import FactsLayout, compile_condition
from models.rules.syntax import ACTIONS, ParsedRule, RuleAction, RuleSyntaxError, parse_rules

ACTION_RANK: dict[str, int] = {action: rank for rank, action in enumerate(ACTIONS)}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    condition: Callable[[Sequence[Any]], Any]
    action: RuleAction
    rank: int  # ACTION_RANK of the action
    text: str


@dataclass
class RuleSet:
    """The rules of one file (or text); :meth:`compiled` gives them for a model's features."""

    rules: tuple[ParsedRule, ...]
    source: str = "rules"
    _compiled: dict[tuple[str, ...], tuple[CompiledRule, ...]] = field(
        default_factory=dict, repr=False
    )
    _version: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str, source: str = "rules") -> RuleSet:
        """Raises :class:`RuleSyntaxError` with the line and column of the first error."""
        return cls(tuple(parse_rules(text, source)), source)

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleSyntaxError(f"cannot read the rule file: {exc}", 1, 1, str(path)) from exc
        return cls.parse(text, str(path))

    @property
    def version(self) -> str:
        """``rules-`` and 12 hex digits of the SHA-256 of the rules as parsed (computed once:
        every decision records it)."""
        if self._version is None:
            canonical = "\n".join(f"{r.name}: {r.text} -> {r.action}" for r in self.rules)
            self._version = "rules-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return self._version

    def compiled(self, feature_names: Sequence[str]) -> tuple[CompiledRule, ...]:
        """The rules bound to positions for a model with these features (once per layout:
        a model with other inputs, promoted later, gets its own)."""
        key = tuple(feature_names)
        found = self._compiled.get(key)
        if found is None:
            layout = FactsLayout(key)
            known = frozenset(d.name for d in DEFAULT_FEATURES)
            found = tuple(
                CompiledRule(
                    rule.name,
                    _compile(rule, layout, self.source, known),
                    rule.action,
                    ACTION_RANK[rule.action],
                    rule.text,
                )
                for rule in self.rules
            )
            self._compiled[key] = found
        return found


def _compile(
    rule: ParsedRule, layout: FactsLayout, source: str, known: frozenset[str]
) -> Callable[[Sequence[Any]], Any]:
    try:
        return compile_condition(rule.condition, layout, source, known)
    except RecursionError:
        raise RuleSyntaxError("the rule nests too deeply", rule.line, 1, source) from None
