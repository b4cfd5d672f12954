"""The champion-against-challenger arithmetic on inputs small enough to check by hand."""

from __future__ import annotations

import pytest

from explain.reports.challenger_compare import Comparer
from tests.reports.challenger_rows import (
    PAST_DELAY,
    PERIOD,
    WITHIN_DELAY,
    Rows,
    compare,
    shadowed,
)


def test_label_metrics_count_the_labelled_decisions_of_both_sides() -> None:
    result = compare(PERIOD).result()

    assert (result.decisions, result.shadowed, result.labelled) == (6, 6, 4)
    assert (result.measured, result.measured_fraud) == (4, 2)
    assert result.declined_unlabelled == 1  # e: the champion declined it, no label came
    assert (result.within_delay, result.taken_legitimate) == (1, 0)  # f: a day old
    # Champion declined a (fraud) and b (legitimate) of the labelled; missed c.
    assert result.champion.quality.precision == pytest.approx(1 / 2)
    assert result.champion.quality.recall == pytest.approx(1 / 2)
    # Challenger declined a and c, both fraud: every fraud caught, no false decline.
    assert result.challenger.quality.precision == pytest.approx(1.0)
    assert result.challenger.quality.recall == pytest.approx(1.0)
    # Ranked a .90, b .85, d .20, c .10: precision 1 at a, 2/4 at c -> AP (1 + 1/2) / 2.
    assert result.champion.ap == pytest.approx(0.75)
    assert result.challenger.ap == pytest.approx(1.0)
    assert result.ap_note is None


def test_decline_rates_and_agreement_are_over_every_shadowed_decision() -> None:
    result = compare(PERIOD).result()

    assert result.champion.decline_rate == pytest.approx(3 / 6)  # a, b, e
    assert result.challenger.decline_rate == pytest.approx(2 / 6)  # a, c
    assert result.agreement[("decline", "decline")] == 1
    assert result.agreement[("decline", "approve")] == 1
    assert result.agreement[("approve", "decline")] == 1
    assert result.agreement[("approve", "approve")] == 1
    assert result.agreement[("decline", "review")] == 1
    assert result.agreement[("review", "approve")] == 1
    assert sum(result.agreement.values()) == 6 and len(result.agreement) == 9
    assert result.agreement_rate == pytest.approx(2 / 6)


def test_the_largest_disagreements_come_first_ties_by_id() -> None:
    rows: Rows = [
        *PERIOD,
        ("bb", 0.85, "decline", 0.20, "approve", None),  # ties with b: |-0.65|
        ("same", 0.40, "approve", 0.40, "approve", None),  # no disagreement at all
    ]

    result = compare(rows, top=3).result()

    assert [d.transaction_id for d in result.disagreements] == ["c", "b", "bb"]
    assert result.disagreements[0].difference == pytest.approx(0.75)
    assert result.disagreements[1].difference == pytest.approx(-0.65)
    assert result.disagreements[0].shadowed.label is True
    assert result.disagreements[2].shadowed.label is None


def test_many_disagreements_keep_only_the_largest() -> None:
    rows: Rows = [
        (f"t{i:03d}", 0.5, "review", 0.5 + i / 1000, "review", None) for i in range(1, 200)
    ]

    result = compare(rows, top=2).result()

    assert [d.transaction_id for d in result.disagreements] == ["t199", "t198"]


def test_no_labels_gives_no_label_metrics_but_the_rates() -> None:
    rows = [(tid, a, b, c, d, None) for tid, a, b, c, d, _ in PERIOD]

    result = compare(rows).result()

    assert result.labelled == 0
    assert result.champion.ap is None and result.challenger.ap is None
    assert result.ap_note is not None and "no shadowed decision" in result.ap_note
    assert result.champion.quality.precision is None
    assert result.champion.quality.recall is None
    assert result.champion.decline_rate == pytest.approx(0.5)
    assert result.declined_unlabelled == 3


@pytest.mark.parametrize(("fraud", "words"), [(False, "legitimate"), (True, "fraud")])
def test_one_class_only_gives_no_average_precision(fraud: bool, words: str) -> None:
    rows = [(tid, a, b, c, d, fraud) for tid, a, b, c, d, _ in PERIOD]

    result = compare(rows).result()

    assert result.champion.ap is None and result.challenger.ap is None
    assert result.ap_note is not None and words in result.ap_note
    if fraud:
        assert result.champion.quality.recall == pytest.approx(3 / 6)
        assert result.champion.quality.precision == pytest.approx(1.0)
    else:
        assert result.champion.quality.recall is None
        assert result.champion.quality.precision == pytest.approx(0.0)


def test_no_shadowed_decision_gives_counts_and_no_rates() -> None:
    comparer = Comparer(None, WITHIN_DELAY)
    comparer.add([])
    comparer.add_unshadowed(5)

    result = comparer.result()

    assert (result.decisions, result.shadowed, result.labelled) == (5, 0, 0)
    assert result.champion.decline_rate is None and result.challenger.decline_rate is None
    assert result.agreement_rate is None
    assert result.disagreements == [] and result.champion_versions == ()
    assert result.ap_note is not None


def test_past_the_label_delay_silence_counts_as_legitimate_unless_declined() -> None:
    result = compare(PERIOD, policy=PAST_DELAY).result()

    # e (declined, no label) is left out; f (review, no label, a month old) is legitimate.
    assert (result.labelled, result.measured, result.measured_fraud) == (4, 5, 2)
    assert (result.declined_unlabelled, result.within_delay, result.taken_legitimate) == (1, 0, 1)
    # Champion ranks a .90 (fraud), b .85, f .55, d .20, c .10 (fraud): (1 + 2/5) / 2.
    assert result.champion.ap == pytest.approx(0.7)
    assert result.challenger.ap == pytest.approx(1.0)
    assert result.champion.quality.precision == pytest.approx(1 / 2)
    assert result.label_delay_days == 7


def test_the_champion_is_compared_by_its_model_action_not_the_served_one() -> None:
    # A block list declined a payment its model approved; the challenger approved it too.
    listed = shadowed(("listed", 0.10, "approve", 0.12, "approve", False), served="decline")
    comparer = Comparer("challenger-2", WITHIN_DELAY)
    comparer.add([listed, shadowed(("plain", 0.9, "decline", 0.9, "decline", True))])

    result = comparer.result()

    assert result.agreement[("approve", "approve")] == 1
    assert result.agreement[("decline", "approve")] == 0
    assert result.champion.declines == 1 and result.overridden == 1
    # The label policy still reads the served action: the list's decline was a decline.
    assert result.champion.quality.labelled_declines == 1


def test_action_flips_come_before_larger_score_differences() -> None:
    rows: Rows = [
        ("far", 0.05, "approve", 0.25, "approve", None),  # 0.20 apart, same action
        ("flip", 0.79, "review", 0.81, "decline", None),  # 0.02 apart, another action
    ]

    result = compare(rows, top=1).result()

    assert [d.transaction_id for d in result.disagreements] == ["flip"]
