"""Metrics of the handbook benchmark, on cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import (
    MeanStd,
    average_precision,
    card_precision_at_k,
    card_precision_at_k_per_day,
    roc_auc,
)


def test_auc_and_ap_of_a_known_ranking() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # Ranked: 0.8 (fraud, P=1), 0.4, 0.35 (fraud, P=2/3), 0.1 -> AP = (1 + 2/3) / 2.
    assert average_precision(labels, scores) == pytest.approx(5 / 6)


def test_undefined_metrics_are_nan_not_warnings() -> None:
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert math.isnan(average_precision(np.array([0, 0]), np.array([0.1, 0.2])))


def test_card_score_is_its_highest_transaction_that_day() -> None:
    # Card "a" has one high-scored genuine payment and one low-scored fraud: as a card it
    # scores 0.9 and is fraudulent, so it beats "b" (0.8, genuine) into the top 1.
    days = [1, 1, 1]
    cards = ["a", "a", "b"]
    labels = [0, 1, 0]
    scores = [0.9, 0.05, 0.8]
    assert card_precision_at_k(days, cards, labels, scores, k=1) == 1.0


def test_card_caught_on_an_earlier_day_is_dropped() -> None:
    # Day 1: fraud card "a" is caught in the top 1. Day 2: "a" (genuine that day) would
    # top the ranking again, but it is dropped, so fraud card "b" gets the slot.
    days = [1, 1, 2, 2]
    cards = ["a", "b", "a", "b"]
    labels = [1, 0, 0, 1]
    scores = [0.9, 0.1, 0.99, 0.5]
    assert card_precision_at_k_per_day(days, cards, labels, scores, k=1) == {1: 1.0, 2: 1.0}


def test_fraud_card_outside_the_top_k_is_not_dropped() -> None:
    # "a" is fraudulent on day 1 but ranked below the budget: not caught, so it still
    # counts on day 2 when it reaches the top.
    days = [1, 1, 2, 2]
    cards = ["a", "b", "a", "b"]
    labels = [1, 0, 1, 0]
    scores = [0.1, 0.9, 0.9, 0.1]
    assert card_precision_at_k_per_day(days, cards, labels, scores, k=1) == {1: 0.0, 2: 1.0}


def test_genuine_card_in_the_top_k_is_not_dropped() -> None:
    days = [1, 2]
    cards = ["a", "a"]
    labels = [0, 1]
    scores = [0.9, 0.9]
    assert card_precision_at_k_per_day(days, cards, labels, scores, k=1) == {1: 0.0, 2: 1.0}


def test_fewer_cards_than_k_still_divide_by_k() -> None:
    # Three cards, two fraudulent, budget 100: the day's precision is 2/100, not 2/3.
    days = [5, 5, 5, 5]
    cards = [10, 11, 12, 12]
    labels = [1, 0, 0, 1]
    scores = [0.3, 0.2, 0.1, 0.0]
    assert card_precision_at_k(days, cards, labels, scores) == pytest.approx(0.02)


def test_mean_over_days_with_budget_two() -> None:
    # Day 1: top 2 are cards 1 and 2, both fraud -> 1.0; card 4's fraud ranks too low to
    # be caught. Day 2: caught card 1 is dropped; top 2 are card 3 (fraud) and card 4
    # (genuine today) -> 0.5. Mean over the two days: 0.75.
    days = [1, 1, 1, 1, 2, 2, 2, 2]
    cards = [1, 2, 3, 4, 1, 3, 4, 5]
    labels = [1, 1, 0, 1, 1, 1, 0, 1]
    scores = [0.9, 0.8, 0.2, 0.1, 0.95, 0.7, 0.6, 0.1]
    assert card_precision_at_k_per_day(days, cards, labels, scores, k=2) == {1: 1.0, 2: 0.5}
    assert card_precision_at_k(days, cards, labels, scores, k=2) == pytest.approx(0.75)


def test_result_does_not_depend_on_row_order() -> None:
    days = np.array([1, 1, 1, 2, 2, 2])
    cards = np.array([1, 2, 3, 1, 2, 3])
    labels = np.array([0, 1, 0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.5, 0.7, 0.7, 0.2])  # ties broken by card id
    order = np.array([5, 2, 0, 4, 1, 3])
    before = card_precision_at_k_per_day(days, cards, labels, scores, k=1)
    after = card_precision_at_k_per_day(
        days[order], cards[order], labels[order], scores[order], k=1
    )
    assert before == after == {1: 0.0, 2: 1.0}


def test_card_precision_rejects_empty_input_and_bad_k() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        card_precision_at_k([], [], [], [])
    with pytest.raises(ValueError, match="positive"):
        card_precision_at_k([1], [1], [1], [1.0], k=0)


def test_mean_std_uses_the_sample_std() -> None:
    summary = MeanStd.of([0.2, 0.4])
    assert summary.mean == pytest.approx(0.3)
    assert summary.std == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert MeanStd.of([0.7]) == MeanStd(0.7, 0.0)
    assert summary.format() == "0.300±0.141"
