"""The challenger report page built from a hand-checked comparison: its figures, matched
row by row by name, its links, both explanations, and plain words where there is nothing
to compute."""

from __future__ import annotations

import re
from dataclasses import replace

from explain.records import Reason
from explain.reports.challenger_compare import Comparer, Comparison
from explain.reports.challenger_page import challenger_page
from explain.reports.query import ChallengerPeriod
from tests.reports.challenger_rows import (
    EXPLANATION,
    PERIOD,
    WITHIN_DELAY,
    Rows,
    cell,
    compare,
    measure,
    record,
    shadowed,
)

_PERIOD = ChallengerPeriod.model_validate({"from": "2024-05-01", "to": "2024-05-01"})
# g: a fraud both missed, so precision and recall differ on each side.
_ROWS: Rows = [*PERIOD, ("g", 0.30, "approve", 0.70, "review", True)]


def _completed(result: Comparison) -> Comparison:
    """As the store completes the disagreements shown: full record and explanation."""
    shown = [
        replace(
            d,
            record=record(d.transaction_id, d.shadowed.champion_score, "approve"),
            challenger_explanation=EXPLANATION,
        )
        for d in result.disagreements
    ]
    return replace(result, disagreements=shown, in_span=8)


def test_the_page_shows_both_sides_and_the_largest_disagreement() -> None:
    result = _completed(compare(_ROWS).result())

    page = challenger_page(result, _PERIOD, {"challenger-2": 7, "challenger-<3>": 2})

    assert "Challenger report — 2024-05-01T00:00:00+00:00 to 2024-05-02T00:00:00+00:00" in page
    # Labelled a, b, c, d, g (fraud a, c, g). Champion ranks a .90, b .85, g .30, d .20,
    # c .10: AP (1 + 2/3 + 3/5) / 3; challenger a .95, c .85, g .70 first: AP 1.
    assert measure(page, "average precision (measured)") == ("0.7556", "1.0000")
    # Champion declines a, b (a fraud); challenger a, c (both fraud).
    assert measure(page, "precision of declines (measured)") == ("50.00%", "100.00%")
    assert measure(page, "recall of declines (measured)") == ("33.33%", "66.67%")
    assert measure(page, "decline rate (every shadowed decision)") == ("42.86%", "28.57%")
    assert cell(page, "shadowed (scored by the challenger too)") == "7 (100.00%)"
    assert cell(page, "decisions from its first to its last scored") == "7 (87.50%)"
    assert cell(page, "unlabelled within the 7-day label delay (left out)") == "1"
    assert cell(page, "declined by the champion, no label (left out)") == "1"
    # The first disagreement (c, a flip, 0.75 apart) links to its decision, drawn for both.
    assert re.search(r"<h3>1\. <a href='decisions/c\.html'>c</a>", page)
    assert page.count("<svg") == 2
    assert "Champion champion-1" in page and "Challenger challenger-2" in page
    # Another version in the period is a link to its own report, escaped.
    assert "version=challenger-%3C3%3E" in page and "challenger-&lt;3&gt; (2)" in page


def test_a_disagreement_gone_from_the_store_says_so() -> None:
    result = compare(PERIOD).result()  # not completed: no record, no explanation

    page = challenger_page(result, _PERIOD, {})

    assert "Not in the store any more" in page and "<svg" not in page


def test_no_shadowed_decision_says_so_in_words() -> None:
    comparer = Comparer(None, WITHIN_DELAY)
    comparer.add_unshadowed(3)

    page = challenger_page(comparer.result(), _PERIOD, {})

    assert "nothing to compare" in page
    assert "Average precision is not given: no shadowed decision" in page
    assert "No shadowed decision was judged differently" in page
    assert "<svg" not in page and "nan" not in page.lower()


def test_a_disagreement_shows_the_recorded_reasons_and_what_the_waterfall_adds_up_to() -> None:
    listed = shadowed(("listed", 0.10, "approve", 0.95, "decline", None), served="decline")
    comparer = Comparer("challenger-2", WITHIN_DELAY)
    comparer.add([listed])
    result = comparer.result()
    base = record("listed", 0.10, "decline")
    reason = {
        "code": "LIST_block_customers",
        "value": 1.0,
        "contribution": 0.0,
        "direction": "raises",
        "text": "the customer is on the block list",
    }
    full = base.model_copy(update={"reasons": [Reason.model_validate(reason)]})
    shown = [
        replace(d, record=full, challenger_explanation=EXPLANATION) for d in result.disagreements
    ]

    page = challenger_page(replace(result, disagreements=shown), _PERIOD, {})

    assert "Recorded reasons: LIST_block_customers: the customer is on the block list" in page
    assert "model approve, served decline" in page
    assert "add up to the fast model&#x27;s raw score (log-odds); a list or rule then made" in page
