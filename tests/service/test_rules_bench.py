"""The rules benchmark runs end to end on a small stream (its figures are in the README;
no timing is asserted here)."""

from __future__ import annotations

from models.rules.ruleset import RuleSet
from service.benchmarks.rules_bench import RULES, measure


def test_the_benchmark_times_twenty_rules_and_the_lists_per_payment() -> None:
    result = measure(300, 10)
    assert result["rules"] == len(RuleSet.parse(RULES).rules) == 20
    assert result["payments"] == 300
    assert 0.0 < result["acted_share"] <= 1.0  # the listed payers at least
    assert set(result["rules_and_lists_us"]) == {"p50_us", "p90_us", "p99_us", "max_us"}
