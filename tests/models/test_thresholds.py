"""Decision thresholds: the documented rule, its fallbacks, and the action mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from models.thresholds import NO_DECLINE, ThresholdRule, Thresholds, choose_thresholds


def _ranked(labels_top_down: list[int], total: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores falling from 0.99; the given labels on top, genuine below."""
    scores = np.linspace(0.99, 0.0, total)
    labels = np.zeros(total, dtype=np.int8)
    labels[: len(labels_top_down)] = labels_top_down
    return labels, scores


def test_decline_is_the_lowest_score_reaching_the_precision_target() -> None:
    # Top 20: 18 frauds (precision 0.90 at 20, 18/21 < 0.90 at 21), then genuine only.
    top = [1] * 10 + [0, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    labels, scores = _ranked(top, 1000)

    t = choose_thresholds(labels, scores)

    assert t.decline == scores[19]
    assert t.rule.fallback is None
    assert t.validation is not None
    assert t.validation.decline_precision == pytest.approx(0.9)
    assert t.validation.decline_recall == 1.0


def test_decline_takes_the_lowest_qualifying_score_even_past_a_dip() -> None:
    # Precision dips below 0.9 at rank 2 (1/2) and recovers to 9/10 at rank 10: the
    # lowest qualifying threshold catches the most fraud at the target precision.
    labels, scores = _ranked([1, 0, 1, 1, 1, 1, 1, 1, 1, 1], 200)

    t = choose_thresholds(labels, scores)

    assert t.decline == scores[9]


def test_review_band_is_the_budget_of_traffic_just_below_decline() -> None:
    labels, scores = _ranked([1] * 10, 1000)

    t = choose_thresholds(labels, scores, review_budget=0.02)

    # 10 frauds in the top 11 is still precision 0.909, so the 11th is declined too.
    assert t.decline == scores[10]
    # 2 % of 1000 = 20 payments: ranks 11..30.
    assert t.review == scores[30]
    in_band = (scores >= t.review) & (scores < t.decline)
    assert in_band.sum() == 20
    assert t.validation is not None and t.validation.review_share == pytest.approx(0.02)


def test_actions_follow_the_bands() -> None:
    labels, scores = _ranked([1] * 10, 1000)
    t = choose_thresholds(labels, scores)

    actions = [t.action(float(s)) for s in scores]

    assert actions[:11] == ["decline"] * 11
    assert actions[11:31] == ["review"] * 20
    assert set(actions[31:]) == {"approve"}


def test_action_boundaries_are_inclusive() -> None:
    t = Thresholds(review=0.2, decline=0.8, rule=ThresholdRule(description="fixed", parameters={}))

    assert t.action(0.0) == "approve"
    assert t.action(np.nextafter(0.2, 0.0)) == "approve"
    assert t.action(0.2) == "review"
    assert t.action(np.nextafter(0.8, 0.0)) == "review"
    assert t.action(0.8) == "decline"
    assert t.action(1.0) == "decline"


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_action_refuses_a_non_finite_score(score: float) -> None:
    t = Thresholds(review=0.2, decline=0.8, rule=ThresholdRule(description="x", parameters={}))

    with pytest.raises(ValueError, match="finite"):
        t.action(score)


def test_review_above_decline_is_rejected() -> None:
    with pytest.raises(ValidationError, match="above decline"):
        Thresholds(review=0.9, decline=0.5, rule=ThresholdRule(description="x", parameters={}))


def test_no_fraud_in_validation_declines_nothing_but_still_reviews() -> None:
    scores = np.linspace(0.5, 0.0, 500)

    t = choose_thresholds(np.zeros(500, dtype=np.int8), scores)

    assert t.decline == NO_DECLINE
    assert t.rule.fallback is not None and "no fraud" in t.rule.fallback
    assert not any(t.action(float(s)) == "decline" for s in scores)
    # The riskiest 2 % (10 of 500) still go to review.
    assert sum(t.action(float(s)) == "review" for s in scores) == 10
    assert t.validation is not None and t.validation.decline_recall is None


def test_too_few_frauds_fall_back_and_say_why() -> None:
    labels, scores = _ranked([1, 1, 1], 300)

    t = choose_thresholds(labels, scores, min_decline_frauds=5)

    assert t.decline == NO_DECLINE
    assert t.rule.fallback is not None and "fewer than 5" in t.rule.fallback


def test_an_imprecise_model_falls_back() -> None:
    # Fraud only every other payment at the top: precision never reaches 0.9.
    labels, scores = _ranked([1, 0] * 20, 400)

    t = choose_thresholds(labels, scores)

    assert t.decline == NO_DECLINE
    assert t.rule.fallback is not None and "precision 0.9" in t.rule.fallback


def test_tiny_data_gets_an_empty_review_band() -> None:
    # 10 payments: 2 % is a fifth of one payment, so nobody is sent to review.
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.linspace(0.9, 0.1, 10)

    t = choose_thresholds(labels, scores)

    assert t.decline == scores[4]
    assert t.review == t.decline
    assert [t.action(float(s)) for s in scores].count("review") == 0


def test_ties_share_one_action() -> None:
    # All scores equal: every payment sits on the same cut point.
    labels = np.array([1] * 95 + [0] * 5)
    scores = np.full(100, 0.3)

    t = choose_thresholds(labels, scores)

    assert t.decline == 0.3
    assert {t.action(float(s)) for s in scores} == {"decline"}


def test_random_validation_sets_keep_the_rule_invariants() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(50, 3000))
        labels = (rng.random(n) < rng.uniform(0.0, 0.1)).astype(np.int8)
        # Rounded scores create ties; fraud leans high so some seeds qualify.
        scores = np.round(np.clip(rng.beta(1, 8, n) + 0.6 * labels * rng.random(n), 0, 1), 3)

        t = choose_thresholds(labels, scores)

        assert 0.0 <= t.review <= t.decline <= 1.0
        review_rows = ((scores >= t.review) & (scores < t.decline)).sum()
        assert review_rows <= math.floor(0.02 * n)
        if t.rule.fallback is None:
            declined = scores >= t.decline
            assert labels[declined].mean() >= 0.9
            assert labels[declined].sum() >= 5


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([], [], "no validation predictions"),
        ([0, 1], [0.1], "equal length"),
        ([0, 2], [0.1, 0.2], "0 or 1"),
        ([0, 1], [0.1, math.nan], "probabilities"),
        ([0, 1], [0.1, 1.5], "probabilities"),
    ],
)
def test_bad_inputs_are_refused(labels: list[int], scores: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_thresholds(np.array(labels), np.array(scores))


def test_thresholds_round_trip_through_json() -> None:
    labels, scores = _ranked([1] * 10, 1000)
    t = choose_thresholds(labels, scores)

    again = Thresholds.model_validate_json(t.model_dump_json())

    assert again == t
    assert again.rule.parameters["precision_target"] == 0.9
