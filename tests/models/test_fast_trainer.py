"""The fast trainer and `riskscore train`, end to end on a small simulated history."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from features.data import DataError, TransactionFrame, load_transactions
from features.definitions import DEFAULT_FEATURES, feature_names
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate, write_csv
from models.artifacts import Manifest, verify_artifact
from models.config import FastModelConfig
from models.fast import FastModel
from models.train.fast_trainer import TrainingDataError, train_fast_model

# 2024-01-01 .. 2024-02-19: 37 warm-up days, then two weeks to train on.
SIMULATION = SimulationConfig(customers=300, terminals=600, days=50, seed=3)
TRAIN_FROM, TRAIN_TO = date(2024, 2, 6), date(2024, 2, 19)
CONFIG = FastModelConfig(num_trees=40, validation_days=4, num_threads=1)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "history.csv.gz"
    write_csv(simulate(SIMULATION), path)
    return path


@pytest.fixture(scope="module")
def history(data_file: Path) -> TransactionFrame:
    return load_transactions(data_file)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, history: TransactionFrame, data_file: Path
) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("artifact")
    manifest = train_fast_model(
        history, TRAIN_FROM, TRAIN_TO, out, CONFIG, data_path=data_file, progress=False
    )
    return out, manifest


def test_manifest_features_are_the_engines(trained: tuple[Path, Manifest]) -> None:
    _, manifest = trained

    assert manifest.feature_names == feature_names(DEFAULT_FEATURES)


def test_training_and_validation_windows_are_recorded(trained: tuple[Path, Manifest]) -> None:
    _, manifest = trained

    assert (manifest.training_window.start, manifest.training_window.end) == (TRAIN_FROM, TRAIN_TO)
    assert manifest.validation_window is not None
    assert manifest.validation_window.start == date(2024, 2, 16)  # the last 4 days
    assert manifest.validation_window.end == TRAIN_TO
    assert manifest.config["validation_days"] == 4


def test_row_counts_match_the_window(
    trained: tuple[Path, Manifest], history: TransactionFrame
) -> None:
    _, manifest = trained
    days = history.day
    labels = history.require_labels()
    train = (days >= np.datetime64("2024-02-06")) & (days <= np.datetime64("2024-02-15"))
    valid = (days >= np.datetime64("2024-02-16")) & (days <= np.datetime64("2024-02-19"))

    assert manifest.rows == {
        "train": int(train.sum()),
        "train_fraud": int(labels[train].sum()),
        "validation": int(valid.sum()),
        "validation_fraud": int(labels[valid].sum()),
    }


def test_data_checksum_is_the_training_files(
    trained: tuple[Path, Manifest], data_file: Path
) -> None:
    _, manifest = trained

    assert manifest.data_sha256 == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert manifest.data_name == "history.csv.gz"


def test_validation_metrics_and_thresholds_are_sane(trained: tuple[Path, Manifest]) -> None:
    _, manifest = trained
    ap = manifest.metrics["validation_average_precision"]
    auc = manifest.metrics["validation_roc_auc"]

    # Simulated fraud is learnable: far above the ~1 % a random ranking would get.
    assert ap is not None and ap > 0.3
    assert auc is not None and auc > 0.8
    assert 0.0 <= manifest.thresholds.review <= manifest.thresholds.decline <= 1.0
    assert 1 <= manifest.num_trees <= CONFIG.num_trees


def test_artifact_verifies_and_scores_its_own_validation_rows(
    trained: tuple[Path, Manifest], history: TransactionFrame
) -> None:
    out, manifest = trained
    assert verify_artifact(out) == manifest
    model = FastModel.load(out)
    valid = history.day >= np.datetime64("2024-02-16")
    scores = model.predict_proba(compute_features(history)[valid])

    declined = scores >= model.thresholds.decline
    assert model.thresholds.validation is not None
    assert declined.mean() == pytest.approx(model.thresholds.validation.decline_share)


def test_leaving_out_later_rows_changes_no_feature(history: TransactionFrame) -> None:
    # The trainer computes features only up to train_to; that must be exact.
    upto = np.flatnonzero(history.day <= np.datetime64(TRAIN_TO, "D"))
    cut = history.take(history.day <= np.datetime64("2024-02-10"))

    full = compute_features(history)
    assert np.array_equal(compute_features(history.take(upto)), full[upto], equal_nan=True)
    assert np.array_equal(compute_features(cut), full[: len(cut)], equal_nan=True)


@pytest.mark.parametrize(
    ("train_from", "train_to", "message"),
    [
        (date(2024, 2, 19), date(2024, 2, 6), "after train_to"),
        (date(2023, 12, 1), date(2024, 2, 19), "outside the data"),
        (date(2024, 2, 6), date(2024, 3, 1), "outside the data"),
        (date(2024, 2, 16), date(2024, 2, 19), "validation needs 1 to 3"),
    ],
)
def test_impossible_windows_are_refused(
    history: TransactionFrame, tmp_path: Path, train_from: date, train_to: date, message: str
) -> None:
    with pytest.raises(TrainingDataError, match=message):
        train_fast_model(history, train_from, train_to, tmp_path, CONFIG, progress=False)
    assert not any(tmp_path.iterdir())


def test_a_window_without_fraud_is_refused(history: TransactionFrame, tmp_path: Path) -> None:
    genuine = dataclasses.replace(history, label=np.zeros(len(history), dtype=np.int8))

    with pytest.raises(TrainingDataError, match="no fraud"):
        train_fast_model(genuine, TRAIN_FROM, TRAIN_TO, tmp_path, CONFIG, progress=False)


def test_validation_without_fraud_still_trains_with_fallback_thresholds(
    history: TransactionFrame, tmp_path: Path
) -> None:
    labels = history.require_labels().copy()
    labels[history.day >= np.datetime64("2024-02-16")] = 0
    quiet_end = dataclasses.replace(history, label=labels)

    manifest = train_fast_model(quiet_end, TRAIN_FROM, TRAIN_TO, tmp_path, CONFIG, progress=False)

    assert manifest.metrics["validation_average_precision"] is None  # undefined, not NaN
    assert manifest.metrics["validation_roc_auc"] is None
    assert manifest.num_trees == CONFIG.num_trees  # nothing to stop early on
    assert manifest.thresholds.decline == 1.0
    assert manifest.thresholds.rule.fallback is not None
    assert verify_artifact(tmp_path) == manifest


def test_a_history_without_labels_is_refused(history: TransactionFrame, tmp_path: Path) -> None:
    unlabelled = dataclasses.replace(history, label=None)

    with pytest.raises(DataError, match="TX_FRAUD"):
        train_fast_model(unlabelled, TRAIN_FROM, TRAIN_TO, tmp_path, CONFIG, progress=False)


def test_training_errors_are_value_errors() -> None:
    assert issubclass(TrainingDataError, ValueError)


# --- `riskscore train` ---------------------------------------------------------------


def _argv(data: Path, train_from: str, train_to: str, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        *("--data", str(data), "--train-from", train_from, "--train-to", train_to),
        *("--out", str(out), *extra),
    ]


@pytest.fixture
def cli() -> argparse.ArgumentParser:
    from service.cli import train_cmd

    parser = argparse.ArgumentParser(prog="riskscore")
    train_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_help_explains_every_option(
    cli: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["train", "--help"])

    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in (
        "--data",
        "--train-from",
        "--train-to",
        "--out",
        "--num-trees",
        "--max-depth",
        "--num-leaves",
        "--learning-rate",
        "--validation-days",
        "--threads",
        "--seed",
    ):
        assert option in text
    assert "manifest.json" in text and "SHA-256" in text


def test_train_end_to_end(
    cli: argparse.ArgumentParser,
    data_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "model"
    options = ("--num-trees", "25", "--validation-days", "4", "--seed", "5", "--threads", "1")
    args = cli.parse_args(_argv(data_file, "2024-02-06", "2024-02-19", out, *options))

    assert args.run(args) == 0

    manifest = verify_artifact(out)
    captured = capsys.readouterr()
    printed = captured.out
    # 2024-02-06 is only 36 days into the data: the user is told windows are not yet full.
    assert "less than 37 days before --train-from" in captured.err
    assert manifest.model_version in printed
    assert f"{manifest.num_trees} trees" in printed
    assert f"decline   score >= {manifest.thresholds.decline:.4f}" in printed
    assert str(out) in printed
    assert (manifest.config["num_trees"], manifest.config["seed"]) == (25, 5)
    assert manifest.config["num_threads"] == 1


def test_train_reports_an_uncovered_window_as_a_user_error(
    cli: argparse.ArgumentParser, data_file: Path, tmp_path: Path
) -> None:
    from service.cli.errors import UserError

    args = cli.parse_args(_argv(data_file, "2024-03-01", "2024-03-10", tmp_path / "model"))

    with pytest.raises(UserError, match="outside the data"):
        args.run(args)


def test_train_reports_a_missing_file_as_a_user_error(
    cli: argparse.ArgumentParser, tmp_path: Path
) -> None:
    from service.cli.errors import UserError

    args = cli.parse_args(_argv(tmp_path / "nope.csv", "2024-02-06", "2024-02-19", tmp_path))

    with pytest.raises(UserError, match="no such file"):
        args.run(args)


@pytest.mark.parametrize(
    "bad",
    [
        ["--train-from", "06/02/2024"],
        ["--train-from", "2024-02-30"],
        ["--num-trees", "0"],
        ["--learning-rate", "-0.1"],
        ["--seed", "-1"],
    ],
)
def test_bad_options_are_rejected_by_the_parser(
    cli: argparse.ArgumentParser, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A repeated option takes the last value, so the bad one is what argparse checks.
    argv = _argv(Path("x.csv"), "2024-02-06", "2024-02-19", Path("dir"), *bad)

    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)

    assert exit_info.value.code == 2
    assert bad[0] in capsys.readouterr().err
