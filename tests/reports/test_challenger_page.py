"""The challenger report page built from a hand-checked comparison: its figures, its
links, both explanations, and plain words where there is nothing to compute."""

from __future__ import annotations

from explain.reports.challenger_compare import Comparer
from explain.reports.challenger_page import challenger_page
from explain.reports.query import ChallengerPeriod
from tests.reports.challenger_rows import PERIOD, compare

_PERIOD = ChallengerPeriod.model_validate({"from": "2024-05-01", "to": "2024-05-01"})


def test_the_page_shows_both_sides_and_the_largest_disagreement() -> None:
    result = compare(PERIOD).result()

    page = challenger_page(result, _PERIOD, {"challenger-2": 6, "challenger-<3>": 2})

    assert "Challenger report — 2024-05-01T00:00:00+00:00 to 2024-05-02T00:00:00+00:00" in page
    # champion AP 0.75, challenger 1; precision 50.00% against 100.00%
    assert "<td>0.7500</td><td>1.0000</td>" in page
    assert "<td>50.00%</td><td>100.00%</td>" in page
    # The first disagreement (c) links to its decision and is drawn for both sides.
    assert "<a href='decisions/c.html'>c</a>" in page
    assert page.count("<svg") == 2
    assert "Champion champion-1" in page and "Challenger challenger-2" in page
    # Another version in the period is a link to its own report, escaped.
    assert "version=challenger-%3C3%3E" in page and "challenger-&lt;3&gt; (2)" in page


def test_no_shadowed_decision_says_so_in_words() -> None:
    comparer = Comparer(None)
    comparer.add_unshadowed(3)

    page = challenger_page(comparer.result(), _PERIOD, {})

    assert "nothing to compare" in page
    assert "Average precision is not given: no shadowed decision" in page
    assert "No shadowed decision was scored differently" in page
    assert "<svg" not in page and "nan" not in page.lower()
