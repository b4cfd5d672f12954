"""Loading handbook-schema histories: every bad file is a DataError naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.data import DataError, load_transactions

HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "history.csv"
    path.write_text(body)
    return path


def test_a_valid_file_loads_with_labels(tmp_path: Path) -> None:
    path = _write(
        tmp_path, HEADER + "1,2018-04-01 00:00:31,5,9,57.16,0\n2,2018-04-01 00:01:00,5,9,0,1\n"
    )
    history = load_transactions(path)
    assert len(history) == 2
    assert history.require_labels().tolist() == [0, 1]
    assert history.epoch_ms[1] - history.epoch_ms[0] == 29_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "not a readable CSV"),
        (HEADER + "1,2018-04-01 00:00:31,5,9,57.16,2\n", "TX_FRAUD must be one of 0..1"),
        (HEADER + "1,2018-04-01 00:00:31,5,9,57.16,0.5\n", "row 2"),
        (HEADER + "1,2018-04-01,5,9,57.16,0\n", "TX_DATETIME"),
        (HEADER + "1,2018-04-01 00:00:31,5,9,-3,0\n", "TX_AMOUNT"),
        (
            HEADER + "1,2018-04-01 00:00:31,5,9,1,0\n1,2018-04-01 00:00:32,5,9,1,0\n",
            "more than once",
        ),
        ("TRANSACTION_ID,TX_AMOUNT\n1,2\n", "missing column"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_transactions(_write(tmp_path, body))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_transactions(tmp_path / "absent.csv")
