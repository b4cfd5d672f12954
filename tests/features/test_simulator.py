"""The transaction simulator and `riskscore simulate`."""

from __future__ import annotations

import argparse
import gzip
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.data import HANDBOOK_COLUMNS, load_transactions
from features.simulator import (
    AMOUNT_FRAUD_THRESHOLD,
    FraudScenario,
    SimulationConfig,
    simulate,
    write_csv,
)
from service.cli import UserError, simulate_cmd

SMALL = SimulationConfig(customers=60, terminals=150, days=10, seed=3)
# Large enough for every scenario to occur (checked below), small enough to run in ~0.1 s.
MODERATE = SimulationConfig(customers=600, terminals=1200, days=60, seed=11)


@pytest.fixture(scope="module")
def moderate() -> pd.DataFrame:
    return simulate(MODERATE)


def _scenario(frame: pd.DataFrame, scenario: FraudScenario) -> pd.DataFrame:
    return frame[frame["TX_FRAUD_SCENARIO"] == scenario]


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_identical_frame_and_bytes(tmp_path: Path) -> None:
    first, second = simulate(SMALL), simulate(SMALL)
    pd.testing.assert_frame_equal(first, second)
    write_csv(first, tmp_path / "a.csv")
    write_csv(second, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # gzip output must not depend on the file name or the time of writing either.
    write_csv(first, tmp_path / "a.csv.gz")
    write_csv(second, tmp_path / "other.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "other.csv.gz").read_bytes()
    assert (tmp_path / "a.csv.gz").read_bytes()[4:8] == bytes(4)  # gzip header: no mtime


def test_different_seed_gives_different_frame() -> None:
    first = simulate(SMALL)
    second = simulate(SimulationConfig(customers=60, terminals=150, days=10, seed=4))
    assert not first.equals(second)


# --- schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["history.csv", "history.csv.gz"])
def test_written_file_loads_with_handbook_columns(tmp_path: Path, name: str) -> None:
    frame = simulate(SMALL)
    path = tmp_path / name
    write_csv(frame, path)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as text:
        header = text.readline().strip()
        first_row = text.readline().strip().split(",")
    assert header.split(",") == list(HANDBOOK_COLUMNS)
    assert len(first_row[1]) == len("YYYY-MM-DD HH:MM:SS")

    loaded = load_transactions(path)
    assert len(loaded) == len(frame)
    np.testing.assert_array_equal(loaded.transaction_id, frame["TRANSACTION_ID"])
    np.testing.assert_array_equal(loaded.amount, frame["TX_AMOUNT"])
    assert loaded.label is not None and loaded.scenario is not None
    np.testing.assert_array_equal(loaded.label, frame["TX_FRAUD"])
    np.testing.assert_array_equal(loaded.scenario, frame["TX_FRAUD_SCENARIO"])


def test_write_csv_rejects_other_extensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv or \.csv\.gz"):
        write_csv(simulate(SMALL), tmp_path / "history.parquet")


def test_rows_sorted_by_time_with_sequential_ids(moderate: pd.DataFrame) -> None:
    assert list(moderate.columns) == list(HANDBOOK_COLUMNS)
    assert moderate["TX_DATETIME"].is_monotonic_increasing
    np.testing.assert_array_equal(moderate["TRANSACTION_ID"], np.arange(len(moderate)))
    assert moderate["TRANSACTION_ID"].is_unique


def test_time_columns_count_from_start_midnight(moderate: pd.DataFrame) -> None:
    elapsed = moderate["TX_DATETIME"] - pd.Timestamp(MODERATE.start)
    np.testing.assert_array_equal(elapsed.dt.total_seconds(), moderate["TX_TIME_SECONDS"])
    np.testing.assert_array_equal(moderate["TX_TIME_SECONDS"] // 86_400, moderate["TX_TIME_DAYS"])
    assert moderate["TX_TIME_DAYS"].min() == 0
    assert moderate["TX_TIME_DAYS"].max() == MODERATE.days - 1


def test_amounts_positive_and_in_cents(moderate: pd.DataFrame) -> None:
    amount = moderate["TX_AMOUNT"].to_numpy()
    assert (amount > 0).all()
    np.testing.assert_allclose(amount * 100, np.round(amount * 100), atol=1e-6)


def test_ids_within_population(moderate: pd.DataFrame) -> None:
    assert moderate["CUSTOMER_ID"].between(0, MODERATE.customers - 1).all()
    assert moderate["TERMINAL_ID"].between(0, MODERATE.terminals - 1).all()
    # Nearly every customer pays at least once in 60 days.
    assert moderate["CUSTOMER_ID"].nunique() > 0.95 * MODERATE.customers


def test_customers_shop_at_several_nearby_terminals(moderate: pd.DataFrame) -> None:
    genuine = _scenario(moderate, FraudScenario.GENUINE)
    per_customer = genuine.groupby("CUSTOMER_ID")["TERMINAL_ID"].nunique()
    # ~9 terminals lie within the radius at this density; nobody roams the whole grid.
    assert 4 <= per_customer.median() <= 20
    assert per_customer.max() < 0.05 * MODERATE.terminals


def test_sparse_terminals_still_serve_every_customer() -> None:
    # 4 terminals on the 100x100 grid: almost nobody has one within the radius.
    frame = simulate(SimulationConfig(customers=40, terminals=4, days=20, seed=5))
    assert frame["CUSTOMER_ID"].nunique() > 35
    assert frame["TERMINAL_ID"].between(0, 3).all()


# --- calendar ----------------------------------------------------------------------------


def test_night_and_weekend_activity(moderate: pd.DataFrame) -> None:
    genuine = _scenario(moderate, FraudScenario.GENUINE)
    hour = genuine["TX_DATETIME"].dt.hour
    assert 0.02 < (hour < 6).mean() < 0.3
    assert hour.between(10, 16).mean() > 0.3  # most payments fall around midday
    weekend = genuine["TX_DATETIME"].dt.day_of_week >= 5
    assert 0.15 < weekend.mean() < 0.45


# --- fraud -------------------------------------------------------------------------------


def test_every_scenario_occurs(moderate: pd.DataFrame) -> None:
    counts = moderate["TX_FRAUD_SCENARIO"].value_counts()
    assert set(counts.index) == {int(s) for s in FraudScenario}
    np.testing.assert_array_equal(
        moderate["TX_FRAUD"], (moderate["TX_FRAUD_SCENARIO"] != 0).astype(int)
    )


def test_fraud_share_is_sane(moderate: pd.DataFrame) -> None:
    assert 0.003 < moderate["TX_FRAUD"].mean() < 0.03


def test_every_large_amount_is_fraud(moderate: pd.DataFrame) -> None:
    large = moderate[moderate["TX_AMOUNT"] > AMOUNT_FRAUD_THRESHOLD]
    assert len(large) > 0
    assert (large["TX_FRAUD"] == 1).all()
    outliers = _scenario(moderate, FraudScenario.AMOUNT_OUTLIER)
    assert (outliers["TX_AMOUNT"] > AMOUNT_FRAUD_THRESHOLD).all()


def test_compromised_terminal_frauds_cluster_on_few_terminals(moderate: pd.DataFrame) -> None:
    frauds = _scenario(moderate, FraudScenario.COMPROMISED_TERMINAL)
    assert frauds["TERMINAL_ID"].nunique() < 0.2 * len(frauds)
    span = frauds.groupby("TERMINAL_ID")["TX_TIME_DAYS"].agg(lambda d: d.max() - d.min())
    assert span.max() < 28 * 2  # at most two overlapping 28-day windows


def test_leaked_card_amounts_far_above_customer_usual(moderate: pd.DataFrame) -> None:
    usual = _scenario(moderate, FraudScenario.GENUINE).groupby("CUSTOMER_ID")["TX_AMOUNT"]
    leaked = _scenario(moderate, FraudScenario.LEAKED_CARD)
    ratio = leaked["TX_AMOUNT"] / leaked["CUSTOMER_ID"].map(usual.median())
    assert ratio.median() > 3.5
    assert (ratio > 1.5).mean() > 0.9


def test_card_testing_bursts(moderate: pd.DataFrame) -> None:
    tests = _scenario(moderate, FraudScenario.CARD_TESTING)
    assert tests["TX_AMOUNT"].between(0.5, 5.0).all()
    others = moderate[moderate["TX_FRAUD_SCENARIO"] != FraudScenario.CARD_TESTING]
    used = set(zip(others["CUSTOMER_ID"], others["TERMINAL_ID"], strict=True))
    tested = zip(tests["CUSTOMER_ID"], tests["TERMINAL_ID"], strict=True)
    assert not any(pair in used for pair in tested)
    bursts = tests.groupby(["CUSTOMER_ID", "TERMINAL_ID"])["TX_TIME_SECONDS"]
    assert bursts.size().between(3, 8).all()
    assert (bursts.max() - bursts.min()).max() <= 7 * 120  # within minutes


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"customers": 0}, "customers must be a positive integer"),
        ({"terminals": -5}, "terminals must be a positive integer"),
        ({"days": 0}, "days must be a positive integer"),
        ({"customers": 2.5}, "customers must be a positive integer"),
        ({"days": True}, "days must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"start": "2024-01-01"}, "start must be a datetime.date"),
        ({"start": datetime(2024, 1, 1, 12)}, "start must be a datetime.date"),
        ({"start": date(9999, 12, 1), "days": 60}, "past the year 9999"),
    ],
)
def test_config_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**changes)  # type: ignore[arg-type]


def test_progress_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    simulate(SimulationConfig(customers=10, terminals=20, days=3), progress=True)
    assert "3/3" in capsys.readouterr().err
    simulate(SimulationConfig(customers=10, terminals=20, days=3))
    assert capsys.readouterr().err == ""


# --- command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskscore")
    simulate_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_writes_gzip_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "history.csv.gz"
    argv = ["simulate", "--out", str(out), "--customers", "80", "--terminals", "160"]
    args = _parser().parse_args([*argv, "--days", "14", "--start", "2023-03-01", "--seed", "7"])
    assert args.run(args) == 0

    loaded = load_transactions(out)
    expected = simulate(
        SimulationConfig(customers=80, terminals=160, days=14, start=date(2023, 3, 1), seed=7)
    )
    assert len(loaded) == len(expected)
    assert str(loaded.day.min()) == "2023-03-01"
    captured = capsys.readouterr()
    assert f"{len(expected):,} rows" in captured.out
    assert "card testing" in captured.out and "history.csv.gz" in captured.out
    assert len(captured.out.strip().splitlines()) == 1
    assert "14/14" in captured.err  # the progress bar


def test_cli_help_describes_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["simulate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("amount outlier", "compromised terminal", "leaked card", "card testing"):
        assert phrase in text
    assert "--customers" in text and "default: 1000" in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--customers", "0"], "--customers must be a positive integer"),
        (["--terminals", "-3"], "--terminals must be a positive integer"),
        (["--days", "0"], "--days must be a positive integer"),
        (["--seed", "-2"], "--seed must be a non-negative integer"),
        (["--start", "2024-13-01"], "not a valid date"),
        (["--start", "01/02/2024"], "YYYY-MM-DD"),
    ],
)
def test_cli_rejects_bad_options(tmp_path: Path, options: list[str], message: str) -> None:
    args = _parser().parse_args(["simulate", "--out", str(tmp_path / "x.csv"), *options])
    with pytest.raises(UserError, match=message):
        args.run(args)
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("missing/x.csv", "does not exist"),
        ("x.txt", r"\.csv or \.csv\.gz"),
        ("folder.csv", "is a directory"),
    ],
)
def test_cli_rejects_unwritable_output(tmp_path: Path, relative: str, message: str) -> None:
    (tmp_path / "folder.csv").mkdir()
    args = _parser().parse_args(["simulate", "--out", str(tmp_path / relative), "--days", "1"])
    with pytest.raises(UserError, match=message):
        args.run(args)
