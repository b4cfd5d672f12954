"""The rule language and the precedence of lists and rules: parsed by our own parser
(never ``eval``), refused at load with line and column, compiled once, and acting after
the model as block > allow > rules > model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.rules.compiled import FactsLayout
from models.rules.lists import ListEntryChange, ListState
from models.rules.policy import Policy
from models.rules.ruleset import RuleSet
from models.rules.syntax import RuleSyntaxError

FEATURES = ["TX_AMOUNT", "TERMINAL_ID_RISK_7DAY_WINDOW"]


def _facts(amount: float = 100.0, risk: float = 0.0, customer: str = "c1") -> list[object]:
    return FactsLayout.row(amount, customer, "t1", None, 0.1, [amount, risk])


def _holds(condition: str, **facts: float | str) -> bool:
    (rule,) = RuleSet.parse(f"r: {condition} -> review").compiled(FEATURES)
    return bool(rule.condition(_facts(**facts)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        (
            "amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2",
            {"amount": 6000, "risk": 0.3},
            True,
        ),
        (
            "amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2",
            {"amount": 6000, "risk": 0.1},
            False,
        ),
        ("amount > 5000 or TERMINAL_ID_RISK_7DAY_WINDOW > 0.2", {"amount": 10, "risk": 0.3}, True),
        ("not amount > 5000", {"amount": 10}, True),
        ("amount * 2 - 1 == 199", {"amount": 100}, True),
        ("-amount < -50", {"amount": 100}, True),
        ("amount / 0 > 1 or amount / 0 <= 1", {"amount": 100}, False),  # NaN: both false
        ("customer_id in ('c1', 'c9')", {"customer": "c1"}, True),
        ('customer_id == "c2"', {"customer": "c1"}, False),
        ("currency == ''", {}, True),
        ("(amount > 1 or amount < 0) and amount != 100", {"amount": 100}, False),
        ("amount >= 1e2 and score < .5", {"amount": 100}, True),
        ("true and not false", {}, True),
    ],
)
def test_conditions_hold_as_written(
    condition: str, facts: dict[str, float], expected: bool
) -> None:
    assert _holds(condition, **facts) is expected


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("a: amount >> 1 -> review", "1:12", "expected a value, found '>'"),
        ("a: amount > 1 review", "1:15", "expected '->' and an action"),
        ("a: amount > 1 -> block", "1:18", "expected an action"),
        ("a: amount > 1 -> approve", "1:18", "a rule can only raise an action"),
        ("# note\n\nb: amount > 1 -> review\na: (amount > 1 -> review", "4:16", "expected ')'"),
        ("a: amount > 1 -> review\na: amount > 2 -> decline", "2:1", "already defined on line 1"),
        ("a: amount ; 1 -> review", "1:11", "unexpected character ';'"),
        ("a: __import__ > 1 -> review", "1:4", "unknown name '__import__'"),
        ("a: amount > 'x' -> review", "1:13", "'>' needs a number, not a text"),
        ("a: customer_id == 3 -> review", "1:16", "cannot compare text with number"),
        ("a: amount + 1 -> review", "1:11", "a rule needs a condition, not a number"),
        ("a: amount > 1 < 2 -> review", "1:15", "comparisons cannot be chained"),
        ("a: amount in (1, 'x') -> review", "1:18", "values of one kind"),
        ("a: amount > 1 and 2 -> review", "1:19", "'and' needs a condition, not a number"),
        ("a: CUSTOMER_ID_NB_TX_1DAY_WINDOW > 1 -> review", "1:4", "not an input of the model"),
        ("and: amount > 1 -> review", "1:1", "expected a rule name"),
        # Another script's digits are not a number a rule means (Arabic-Indic five).
        ("a: amount > \u0665 -> review", "1:13", "unexpected character"),
        # Deep nesting: an error with its line, never a RecursionError's traceback.
        ("a: " + "(" * 2000 + "amount > 1" + ")" * 2000 + " -> review", "1:1", "nests too"),
        ("a: " + "not " * 3000 + "amount > 1 -> review", "1:1", "nests too deeply"),
        # A rule's text is recorded with every decision it fires on.
        ("a: customer_id == '4111 1111 1111 1111' -> decline", "1:1", "card number"),
    ],
)
def test_a_bad_rule_is_refused_with_its_line_and_column(
    text: str, where: str, message: str
) -> None:
    with pytest.raises(RuleSyntaxError) as refused:
        RuleSet.parse(text, "rules.txt").compiled(FEATURES)
    assert str(refused.value).startswith(f"rules.txt:{where}: ")
    assert message in str(refused.value)


def test_the_version_follows_the_meaning_not_the_layout() -> None:
    one = RuleSet.parse("a: amount > 1 -> review")
    same = RuleSet.parse("# a comment\n\na: amount > 1 -> review   # why\n")
    assert same.version == one.version
    assert RuleSet.parse("a: amount > 2 -> review").version != one.version
    assert RuleSet.parse("a: amount > 1 -> decline").version != one.version
    assert one.version.startswith("rules-") and len(one.version) == len("rules-") + 12


def test_a_hash_inside_a_string_is_not_a_comment() -> None:
    (rule,) = RuleSet.parse("a: customer_id == 'c#1' -> review # note").compiled(FEATURES)
    assert rule.condition(_facts(customer="c#1"))


def _lists(*entries: tuple[str, str]) -> ListState:
    return ListState().applied(
        ListEntryChange(i, name, value, "add", f"why {i}", "test", 0)  # type: ignore[arg-type]
        for i, (name, value) in enumerate(entries, start=1)
    )


def _decide(
    policy: Policy,
    model_action: str,
    customer: str = "c1",
    terminal: str = "t1",
    amount: float = 100.0,
) -> tuple[str, list[str]] | None:
    verdict = policy.decide(
        customer, terminal, amount, None, 0.1, FEATURES, np.array([amount, 0.0]), model_action
    )
    return None if verdict is None else (verdict.action, [o.code for o in verdict.overrides])


def test_block_beats_allow_beats_rules_beats_model() -> None:
    rules = RuleSet.parse("small: amount < 1000 -> review\nany: amount > 0 -> decline")
    policy = Policy(
        rules,
        _lists(
            ("blocked_customers", "c-b"),
            ("allowed_customers", "c-a"),
            ("allowed_terminals", "t-a"),
            ("blocked_terminals", "t-b"),
        ),
    )
    # Blocked: declined whatever the model and the rules say, and whatever allows it.
    assert _decide(policy, "approve", customer="c-b") == ("decline", ["LIST_blocked_customers"])
    assert _decide(policy, "approve", customer="c-a", terminal="t-b") == (
        "decline",
        ["LIST_blocked_terminals"],
    )
    assert _decide(policy, "approve", customer="c-b", terminal="t-b") == (
        "decline",
        ["LIST_blocked_customers", "LIST_blocked_terminals"],
    )
    # Allowed: approved even where the model declines and the rules would decline.
    assert _decide(policy, "decline", customer="c-a") == ("approve", ["LIST_allowed_customers"])
    assert _decide(policy, "decline", terminal="t-a") == ("approve", ["LIST_allowed_terminals"])
    # Rules: every rule that fires is named; the highest action wins.
    assert _decide(policy, "approve") == ("decline", ["RULE_small", "RULE_any"])


def test_a_rule_raises_but_never_lowers() -> None:
    policy = Policy(RuleSet.parse("small: amount < 1000 -> review"))
    assert _decide(policy, "approve") == ("review", ["RULE_small"])
    # The model declined: the review rule fired (and is recorded) but cannot lower it.
    assert _decide(policy, "decline") == ("decline", ["RULE_small"])
    assert _decide(policy, "approve", amount=5000.0) is None  # nothing fired


def test_nothing_listed_and_no_rules_leaves_the_model_alone() -> None:
    assert _decide(Policy(), "review") is None
    assert Policy().rules_version is None


def test_a_removed_entry_stops_acting_and_changes_apply_once() -> None:
    state = _lists(("blocked_customers", "c1"))
    removal = ListEntryChange(2, "blocked_customers", "c1", "remove", "cleared", "test", 0)
    later = state.applied([removal])
    assert dict(later.entries["blocked_customers"]) == {} and later.version == 2
    assert dict(state.entries["blocked_customers"]) == {"c1": "why 1"}  # unchanged
    # A change read twice (around a poll) is applied once.
    assert later.applied([removal]).version == 2
    readd = ListEntryChange(3, "blocked_customers", "c1", "add", "again", "test", 0)
    assert dict(later.applied([readd, removal]).entries["blocked_customers"]) == {"c1": "again"}


def test_nan_features_fire_no_comparison() -> None:
    (rule,) = RuleSet.parse("r: TERMINAL_ID_RISK_7DAY_WINDOW >= 0 -> review").compiled(FEATURES)
    assert not rule.condition(FactsLayout.row(1.0, "c", "t", None, 0.1, [1.0, math.nan]))
