"""The prequential protocol: fold dates, known-compromised cards, coverage, CLI output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import models.evaluation as evaluation
from features.data import HANDBOOK_COLUMNS, TransactionFrame, frame_from_pandas, load_transactions
from models.config import FastModelConfig
from models.evaluation import (
    HANDBOOK_TEST,
    HANDBOOK_VALIDATION,
    CoverageError,
    Fold,
    PreparedHistory,
    Training,
    check_coverage,
    get_protocol,
    known_compromised,
    prepare,
    run_fold,
    warmup_days,
)
from service.cli import evaluate_cmd
from service.cli.errors import UserError

VALIDATION_STARTS = ["2018-07-11", "2018-07-04", "2018-06-27", "2018-06-20"]
# Few trees keep the synthetic runs fast; the pattern below needs no more.
SMALL = FastModelConfig(num_trees=40, num_threads=1)


def synthetic_history(
    first: date, last: date, per_day: int = 250, customers: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """A handbook-schema history whose frauds (10 %) are exactly the payments above 220.

    Many customers with few payments each keep most cards unknown-compromised, and the
    fraud rate gives a training week enough frauds for the default leaf size.
    """
    rng = np.random.default_rng(seed)
    days = (last - first).days + 1
    n = days * per_day
    day = np.repeat(np.arange(days), per_day)
    seconds = day * 86_400 + rng.integers(0, 86_400, size=n)
    fraud = rng.random(n) < 0.10
    amount = np.where(fraud, rng.uniform(230, 500, n), rng.uniform(5, 150, n)).round(2)
    start = pd.Timestamp(first)
    frame = pd.DataFrame(
        {
            "TX_DATETIME": (start + pd.to_timedelta(seconds, unit="s")).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "CUSTOMER_ID": rng.integers(0, customers, size=n),
            "TERMINAL_ID": rng.integers(0, 500, size=n),
            "TX_AMOUNT": amount,
            "TX_TIME_SECONDS": seconds,
            "TX_TIME_DAYS": day,
            "TX_FRAUD": fraud.astype(int),
            "TX_FRAUD_SCENARIO": fraud.astype(int),
        }
    )
    frame = frame.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    frame.insert(0, "TRANSACTION_ID", np.arange(n))
    return frame[list(HANDBOOK_COLUMNS)]


def _validation_span() -> tuple[date, date]:
    # From the feature warm-up before the earliest fold to the last assessment day.
    first = min(HANDBOOK_VALIDATION.fold_starts) - timedelta(days=warmup_days())
    return first, max(f.assessment_last for f in HANDBOOK_VALIDATION.folds())


@pytest.fixture(scope="module")
def validation_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.csv"
    synthetic_history(*_validation_span()).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def prepared() -> PreparedHistory:
    history = frame_from_pandas(synthetic_history(*_validation_span()))
    return prepare(history, HANDBOOK_VALIDATION)


def _one_payment_per_day(first: date, last: date) -> TransactionFrame:
    days = pd.date_range(first, last, freq="D")
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(len(days)),
            "TX_DATETIME": (days + pd.Timedelta(hours=12)).strftime("%Y-%m-%d %H:%M:%S"),
            "CUSTOMER_ID": 1,
            "TERMINAL_ID": 1,
            "TX_AMOUNT": 10.0,
            "TX_FRAUD": 0,
        }
    )
    return frame_from_pandas(frame)


# --- fold dates -----------------------------------------------------------------------


def test_fold_dates_follow_training_delay_assessment_weeks() -> None:
    fold = Fold(date(2018, 7, 11))
    assert fold.training_last == date(2018, 7, 17)
    assert fold.assessment_first == date(2018, 7, 25)
    assert fold.assessment_last == date(2018, 7, 31)


def test_protocols_cover_the_handbook_weeks() -> None:
    assert [d.isoformat() for d in HANDBOOK_VALIDATION.fold_starts] == VALIDATION_STARTS
    validation = HANDBOOK_VALIDATION.folds()
    assert min(f.assessment_first for f in validation) == date(2018, 7, 4)
    assert max(f.assessment_last for f in validation) == date(2018, 7, 31)
    test = HANDBOOK_TEST.folds()
    assert [f.start for f in test] == [date(2018, 8, d) for d in (15, 8, 1)] + [date(2018, 7, 25)]
    assert min(f.assessment_first for f in test) == date(2018, 8, 8)
    assert max(f.assessment_last for f in test) == date(2018, 9, 4)


def test_all_history_variant_is_named_as_another_protocol() -> None:
    protocol = get_protocol("handbook-validation", Training.ALL_HISTORY)
    assert protocol.label == "handbook-validation+all-history"
    assert protocol.fold_starts == HANDBOOK_VALIDATION.fold_starts
    assert get_protocol("handbook-validation").label == "handbook-validation"
    with pytest.raises(KeyError, match="handbook-test"):
        get_protocol("handbook-final")


def test_warmup_is_the_longest_window_plus_its_delay() -> None:
    # The handbook's terminal windows: 30 days behind a 7-day label delay.
    assert warmup_days() >= 37


# --- known-compromised cards ----------------------------------------------------------


def test_known_compromised_cards_are_removed_per_assessment_day() -> None:
    fold = Fold(date(2018, 7, 11))
    s = np.datetime64(fold.start, "D")
    assessment = [s + 14 + k for k in range(7)]
    fraud_day = {
        0: s + 2,  # training week: known on every assessment day
        1: s + 8,  # delay week: known from S+16 (= S+14+k with S+6+k >= S+8)
        2: s - 1,  # before the training week: not part of the rule
        3: s + 14,  # on an assessment day: its label is not known in that week
        4: s + 12,  # last delay day that counts: known on S+20 only
        5: None,  # never a fraud
    }
    days, cards, labels = [], [], []
    for card, when in fraud_day.items():
        if when is not None and when not in assessment:
            days.append(when)
            cards.append(card)
            labels.append(1)
        for day in assessment:
            days.append(day)
            cards.append(card)
            labels.append(int(day == when))
    removed = known_compromised(np.array(days), np.array(cards), np.array(labels), fold)

    def removed_days(card: int) -> list[int]:
        rows = [i for i, c in enumerate(cards) if c == card and removed[i]]
        return sorted(int((days[i] - s).astype(int)) for i in rows)

    assert removed_days(0) == [14, 15, 16, 17, 18, 19, 20]
    assert removed_days(1) == [16, 17, 18, 19, 20]
    assert removed_days(2) == []
    assert removed_days(3) == []
    assert removed_days(4) == [20]
    assert removed_days(5) == []
    # Rows outside the assessment week are never flagged: they are not assessed at all.
    assert not removed[[i for i, d in enumerate(days) if d not in assessment]].any()


# --- coverage -------------------------------------------------------------------------


def test_test_protocol_on_dev_data_names_missing_days_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = _one_payment_per_day(date(2018, 4, 1), date(2018, 8, 7))

    def must_not_run(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("features computed before the coverage check")

    monkeypatch.setattr(evaluation, "compute_features", must_not_run)
    with pytest.raises(CoverageError) as caught:
        prepare(history, HANDBOOK_TEST)
    message = str(caught.value)
    assert "handbook-test" in message
    assert "has none on 2018-08-08..2018-09-04" in message
    assert "(2018-04-01..2018-08-07)" in message


@pytest.mark.handbook
def test_handbook_test_protocol_is_refused_on_the_dev_file(handbook_dir: Path) -> None:
    history = load_transactions(handbook_dir / "transactions_dev.csv.gz")
    with pytest.raises(CoverageError, match=r"\(2018-04-01\.\.2018-08-07\) has none on 2018-08-08"):
        check_coverage(history.day, HANDBOOK_TEST, warmup_days())
    check_coverage(history.day, HANDBOOK_VALIDATION, warmup_days())  # validation fits


def test_a_missing_day_inside_the_span_is_named() -> None:
    history = _one_payment_per_day(date(2018, 4, 1), date(2018, 8, 7))
    days = history.day
    gaps = (days != np.datetime64("2018-07-20")) & (days != np.datetime64("2018-06-01"))
    with pytest.raises(CoverageError, match=r"has none on 2018-06-01, 2018-07-20$"):
        check_coverage(days[gaps], HANDBOOK_VALIDATION, warmup=37)
    check_coverage(days, HANDBOOK_VALIDATION, warmup=37)  # complete: no error


def test_missing_feature_warmup_fails_too() -> None:
    history = _one_payment_per_day(date(2018, 6, 1), date(2018, 8, 7))
    with pytest.raises(CoverageError, match=r"has none on 2018-05-14\.\.2018-05-31"):
        check_coverage(history.day, HANDBOOK_VALIDATION, warmup=37)


# --- folds on a synthetic history -----------------------------------------------------


def test_fold_trains_only_on_its_week_and_stops_early_inside_it(
    prepared: PreparedHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int]] = []
    real_fit = evaluation.fit_booster

    def spy(
        x: np.ndarray,
        y: np.ndarray,
        names: Sequence[str],
        config: FastModelConfig,
        x_valid: np.ndarray | None = None,
        y_valid: np.ndarray | None = None,
    ) -> lgb.Booster:
        booster = real_fit(x, y, names, config, x_valid, y_valid)
        calls.append((len(x), 0 if x_valid is None else len(x_valid), booster.num_trees()))
        return booster

    monkeypatch.setattr(evaluation, "fit_booster", spy)
    fold = Fold(date(2018, 7, 4))
    config = FastModelConfig(num_trees=40, validation_days=2, num_threads=1)
    result, booster = run_fold(prepared, fold, config)

    start, last = np.datetime64(fold.start, "D"), np.datetime64(fold.training_last, "D")
    week = int(((prepared.days >= start) & (prepared.days <= last)).sum())
    held = int(((prepared.days >= last - 1) & (prepared.days <= last)).sum())
    assert result.training_rows == week
    (fit_rows, valid_rows, stopped_trees), (refit_rows, no_valid, final_trees) = calls
    assert (fit_rows, valid_rows) == (week - held, held)  # last 2 training days held out
    assert (refit_rows, no_valid) == (week, 0)  # refit on the whole week...
    assert final_trees == stopped_trees == booster.num_trees()  # ...with the chosen trees


def test_all_history_trains_on_every_day_up_to_the_week_end(prepared: PreparedHistory) -> None:
    fold = Fold(date(2018, 6, 20))
    config = FastModelConfig(num_trees=10, validation_days=0, num_threads=1)
    week, _ = run_fold(prepared, fold, config)
    everything, _ = run_fold(prepared, fold, config, Training.ALL_HISTORY)
    last = np.datetime64(fold.training_last, "D")
    assert everything.training_rows == int((prepared.days <= last).sum())
    assert everything.training_rows > week.training_rows
    # The assessment set does not depend on how the model was trained.
    assert everything.assessed_rows == week.assessed_rows
    assert everything.removed_rows == week.removed_rows


def test_fold_removes_known_compromised_rows_and_scores_the_rest(
    prepared: PreparedHistory,
) -> None:
    fold = Fold(date(2018, 7, 11))
    result, _ = run_fold(prepared, fold, SMALL)
    first, last = np.datetime64(fold.assessment_first), np.datetime64(fold.assessment_last)
    week = int(((prepared.days >= first) & (prepared.days <= last)).sum())
    assert result.removed_rows > 0  # some cards had a fraud in the training week
    assert result.assessed_rows + result.removed_rows == week
    assert result.ap > 0.9  # frauds are exactly the payments above 220
    assert result.cp_at_100 <= result.cp_at_100_ceiling + 1e-12


# --- the CLI --------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="riskscore")
    evaluate_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_cli_writes_the_json_shape_and_prints_both_tables(
    validation_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    assert _cli(["evaluate", "--data", str(validation_csv), "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["protocol"] == "handbook-validation"
    assert payload["fold_starts"] == VALIDATION_STARTS
    assert set(payload["results"]) == {"fast"}
    fast = payload["results"]["fast"]
    assert set(fast) == {"auc", "ap", "cp_at_100"}
    for summary in fast.values():
        assert set(summary) == {"mean", "std"}
        assert all(isinstance(v, float) for v in summary.values())
    assert fast["ap"]["mean"] > 0.9
    folds = payload["folds"]["fast"]
    assert [f["start"] for f in folds] == VALIDATION_STARTS
    assert np.mean([f["ap"] for f in folds]) == pytest.approx(fast["ap"]["mean"])

    printed = capsys.readouterr().out
    assert "mean ± std" in printed
    assert "TEST-fold" in printed
    assert "handbook XGBoost" in printed and "0.687±0.01 " in printed


def test_cli_all_history_is_reported_under_its_own_name(
    validation_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.json"
    argv = ["evaluate", "--data", str(validation_csv), "--all-history", "--json", str(out)]
    assert _cli(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["protocol"] == "handbook-validation+all-history"
    assert payload["training"] == "all-history"
    printed = capsys.readouterr().out
    assert printed.startswith("protocol handbook-validation+all-history")
    assert "NOT the handbook's protocol" in printed


def test_cli_refuses_uncovered_protocol_without_writing(
    validation_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never.json"
    argv = ["evaluate", "--data", str(validation_csv), "--protocol", "handbook-test"]
    with pytest.raises(UserError, match=r"has none on 2018-08-01\.\.2018-09-04"):
        _cli([*argv, "--json", str(out)])
    assert not out.exists()


def test_cli_rejects_missing_file_and_json_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        _cli(["evaluate", "--data", str(tmp_path / "absent.csv")])
    with pytest.raises(UserError, match="does not exist"):
        _cli(["evaluate", "--data", "x.csv", "--json", str(tmp_path / "no" / "out.json")])
