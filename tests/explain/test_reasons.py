"""Reason codes: the largest contributions, stable names, readable text."""

from __future__ import annotations

import numpy as np
import pytest

from explain.reasons import ReasonCoder, format_value
from features.definitions import by_name, feature_names


def test_reasons_are_the_largest_contributions_by_size() -> None:
    names = feature_names()
    coder = ReasonCoder(names, count=3)
    values = np.arange(len(names), dtype=float)
    contributions = np.zeros(len(names) + 1)
    contributions[[2, 5, 9, 11]] = [0.2, -0.9, 0.5, 0.01]
    contributions[-1] = -4.0  # the base value is never a reason
    reasons = coder.reasons(values, contributions)
    assert [r.code for r in reasons] == [names[5], names[9], names[2]]
    assert [r.direction for r in reasons] == ["lowers", "raises", "raises"]
    assert reasons[0].value == 5.0 and reasons[0].contribution == -0.9
    assert reasons[1].text.startswith(by_name()[names[9]].description)


def test_features_that_did_not_move_the_score_are_no_reason() -> None:
    names = feature_names()
    contributions = np.zeros(len(names) + 1)
    contributions[0] = 0.3
    reasons = ReasonCoder(names, count=5).reasons(np.ones(len(names)), contributions)
    assert [r.code for r in reasons] == [names[0]]


def test_explanation_keeps_every_feature_and_the_raw_score() -> None:
    names = feature_names()
    contributions = np.linspace(-1, 1, len(names) + 1)
    explanation = ReasonCoder(names).explanation("m", np.ones(len(names)), contributions, 1.5)
    assert [a["feature"] for a in explanation.attributions] == names
    assert explanation.base_value == contributions[-1]
    assert explanation.raw_score == 1.5
    assert explanation.shap()[names[0]] == -1.0


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("TX_AMOUNT", 1234.5, "1,234.50"),
        ("TX_DURING_WEEKEND", 0.0, "no"),
        ("CUSTOMER_ID_NB_TX_1DAY_WINDOW", 3.0, "3"),
        ("TERMINAL_ID_RISK_7DAY_WINDOW", 0.125, "12.5%"),
        ("CUSTOMER_ID_AMOUNT_TO_MEAN_30DAY_WINDOW", 4.0, "4.00x"),
        ("CUSTOMER_ID_AMOUNT_ZSCORE_30DAY_WINDOW", 2.25, "+2.2 sd"),
        ("CUSTOMER_ID_SECONDS_SINCE_PREVIOUS", 42.0, "42 s"),
        ("CUSTOMER_ID_SECONDS_SINCE_PREVIOUS", 3 * 86_400.0, "3.0 d"),
    ],
)
def test_values_read_as_their_kind(name: str, value: float, text: str) -> None:
    assert format_value(by_name()[name], value) == text


def test_unknown_feature_and_bad_count() -> None:
    assert format_value(None, 0.5) == "0.5"
    with pytest.raises(ValueError):
        ReasonCoder(["x"], count=-1)


def test_one_row_and_a_batch_choose_the_same_reasons_even_on_ties() -> None:
    # A lone row is sorted in Python, a batch by numpy: ties must keep model order in both.
    names = feature_names()
    coder = ReasonCoder(names, count=3)
    rng = np.random.default_rng(3)
    for _ in range(500):
        values = rng.random((1, len(names)))
        contributions = np.round(rng.normal(size=(1, len(names) + 1)), 1)  # many ties
        contributions[0, rng.integers(0, len(names), 5)] = 0.0
        alone = coder.code_many(values, contributions)[0]
        batched = coder.code_many(np.repeat(values, 3, 0), np.repeat(contributions, 3, 0))[0]
        assert alone == batched
