"""CSV cells a spreadsheet would run as a formula are neutralised; other cells are not."""

from __future__ import annotations

import pytest

from explain.reports.export import _csv_cell


@pytest.mark.parametrize("text", ["=1+2", "+31 6", "-x", "@cmd", "\tx", "\rx"])
def test_a_cell_that_starts_a_formula_is_written_as_text(text: str) -> None:
    assert _csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["c-42", "tx 1", "", "a=b"])
def test_other_text_is_written_as_it_is(value: str) -> None:
    assert _csv_cell(value) == value


def test_numbers_stay_numbers() -> None:
    assert _csv_cell(-7.25) == -7.25
    assert _csv_cell(-3) == -3
