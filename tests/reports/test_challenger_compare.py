"""The champion-against-challenger arithmetic on inputs small enough to check by hand."""

from __future__ import annotations

import pytest

from explain.reports.challenger_compare import Comparer
from tests.reports.challenger_rows import PERIOD, Rows, compare, record


def test_label_metrics_count_the_labelled_decisions_of_both_sides() -> None:
    result = compare(PERIOD).result()

    assert (result.decisions, result.shadowed, result.labelled) == (6, 6, 4)
    assert result.labelled_fraud == 2
    assert result.declined_unlabelled == 1  # e: the champion declined it, no label came
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

    assert [d.record.transaction_id for d in result.disagreements] == ["c", "b", "bb"]
    assert result.disagreements[0].difference == pytest.approx(0.75)
    assert result.disagreements[1].difference == pytest.approx(-0.65)
    assert result.disagreements[0].label is True and result.disagreements[2].label is None


def test_many_disagreements_keep_only_the_largest() -> None:
    rows: Rows = [
        (f"t{i:03d}", 0.5, "review", 0.5 + i / 1000, "review", None) for i in range(1, 200)
    ]

    result = compare(rows, top=2).result()

    assert [d.record.transaction_id for d in result.disagreements] == ["t199", "t198"]


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
    comparer = Comparer(None)
    comparer.add(record("x", 0.9, "decline"), None, True)
    comparer.add_unshadowed(4)

    result = comparer.result()

    assert (result.decisions, result.shadowed, result.labelled) == (5, 0, 0)
    assert result.champion.decline_rate is None and result.challenger.decline_rate is None
    assert result.agreement_rate is None
    assert result.disagreements == [] and result.champion_versions == ()
    assert result.ap_note is not None
