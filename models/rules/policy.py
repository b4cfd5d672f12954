"""What acts after the model: block list > allow list > rules > model.

A payment whose customer or terminal is blocked is declined; else one that is allowed is
approved (the model's action lowered, rules not asked); else every rule whose condition
holds may raise the model's action (approve → review → decline), never lower it. Each
override becomes a reason of the decision (``LIST_<list>``, ``RULE_<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
import numpy as np

from models.rules.compiled import FactsLayout
from models.rules.lists import ListName, ListState
from models.rules.ruleset import ACTION_RANK, RuleSet
from models.rules.syntax import ACTIONS

Direction = Literal["raises", "lowers"]


class Override(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A list or rule that acted on a decision, as a reason code and a line of text."""

    code: str  # LIST_<list> or RULE_<name>
    direction: Direction
    text: str


class Verdict(msgspec.Struct, frozen=True, gc=False):
    action: str
    overrides: tuple[Override, ...]


class Policy:
    """The lists (replaced whole when they change) and the rule set of one process."""

    def __init__(self, rules: RuleSet | None = None, lists: ListState | None = None) -> None:
        self.rules = rules
        self.lists = lists or ListState()

    @property
    def rules_version(self) -> str | None:
        return None if self.rules is None else self.rules.version

    def check(self, feature_names: Sequence[str]) -> None:
        """Compile the rules for a model's features now: a rule naming a feature the model
        lacks is refused at start, with its line and column, not at the first payment."""
        if self.rules is not None:
            self.rules.compiled(feature_names)

    def decide(
        self,
        customer_id: str,
        terminal_id: str,
        amount: float,
        currency: str | None,
        score: float,
        feature_names: Sequence[str],
        values: np.ndarray,
        model_action: str,
    ) -> Verdict | None:
        """The action with what overrode the model's, or None when nothing acted.

        ``values``: the model's feature values in ``feature_names`` order (read only when
        there are rules to evaluate)."""
        entries = self.lists.entries
        blocked = _listed(entries, "blocked_customers", "customer", customer_id, "raises")
        blocked += _listed(entries, "blocked_terminals", "terminal", terminal_id, "raises")
        if blocked:
            return Verdict("decline", blocked)
        allowed = _listed(entries, "allowed_customers", "customer", customer_id, "lowers")
        allowed += _listed(entries, "allowed_terminals", "terminal", terminal_id, "lowers")
        if allowed:
            return Verdict("approve", allowed)
        if self.rules is None:
            return None
        rules = self.rules.compiled(feature_names)
        if not rules:
            return None
        row = FactsLayout.row(amount, customer_id, terminal_id, currency, score, values.tolist())
        rank = ACTION_RANK[model_action]
        fired: list[Override] = []
        for rule in rules:
            if rule.condition(row):
                rank = max(rank, rule.rank)
                fired.append(
                    Override(
                        f"RULE_{rule.name}",
                        "raises",
                        f"rule {rule.name}: {rule.text} -> {rule.action}",
                    )
                )
        if not fired:
            return None
        return Verdict(ACTIONS[rank], tuple(fired))


def _listed(
    entries: Mapping[ListName, Mapping[str, str]],
    name: ListName,
    kind: str,
    value: str,
    direction: Direction,
) -> tuple[Override, ...]:
    reason = entries[name].get(value)
    if reason is None:
        return ()
    why = f": {reason}" if reason else ""
    return (Override(f"LIST_{name}", direction, f"{kind} {value} is on the {name} list{why}"),)
