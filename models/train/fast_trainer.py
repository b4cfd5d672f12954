"""Trains the fast model on a calendar window of a history and writes its artifact.

Features are computed over the history up to the window's last day, because a window's
features need the days before it (30-day windows, 7-day label delay: ``WARMUP_DAYS``).
The last ``config.validation_days`` days of the window are held out: early stopping,
the reported metrics and the decision thresholds all come from them, so none of the three
is measured on rows the trees were fitted to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features.data import TransactionFrame
from features.definitions import DEFAULT_FEATURES, feature_names
from features.offline import compute_features
from models.artifacts import DateWindow, Manifest, sha256_file, write_artifact
from models.config import FastModelConfig
from models.distributions import describe_columns
from models.metrics import average_precision, roc_auc
from models.thresholds import choose_thresholds
from models.train.booster import fit_booster

# Days of history the slowest feature looks back (window + label delay); training rows
# closer than this to the start of the data see windows that are not yet full.
WARMUP_DAYS = max(
    math.ceil(((d.window or timedelta(0)) + d.delay) / timedelta(days=1)) for d in DEFAULT_FEATURES
)


# Frozen, so one shared default instance is safe.
DEFAULT_CONFIG = FastModelConfig()


class TrainingDataError(ValueError):
    """The history or the requested window cannot train a model."""


@dataclass(frozen=True)
class WindowSplit:
    """Row masks over the history for the training and validation parts of the window."""

    train: np.ndarray
    valid: np.ndarray
    training_window: DateWindow
    validation_window: DateWindow


def split_window(
    history: TransactionFrame, train_from: date, train_to: date, validation_days: int
) -> WindowSplit:
    """Rows of days ``train_from..train_to``; the last ``validation_days`` days validate."""
    labels = history.require_labels()
    if train_from > train_to:
        raise TrainingDataError(f"train_from {train_from} is after train_to {train_to}")
    if len(history) == 0:
        raise TrainingDataError("the history has no transactions")
    days = history.day
    first, last = _as_date(days.min()), _as_date(days.max())
    if train_from < first or train_to > last:
        raise TrainingDataError(
            f"window {train_from}..{train_to} is outside the data, which covers {first}..{last}"
        )
    window_days = (train_to - train_from).days + 1
    if validation_days < 1 or validation_days >= window_days:
        raise TrainingDataError(
            f"validation needs 1 to {window_days - 1} of the window's {window_days} days, "
            f"got {validation_days}"
        )
    valid_from = train_to - timedelta(days=validation_days - 1)
    train = _between(days, train_from, valid_from - timedelta(days=1))
    valid = _between(days, valid_from, train_to)
    if not train.any() or not valid.any():
        part = "training" if not train.any() else "validation"
        raise TrainingDataError(f"the {part} part of {train_from}..{train_to} has no transactions")
    if not labels[train].any():
        raise TrainingDataError(
            f"no fraud in the training days {train_from}..{valid_from - timedelta(days=1)}: "
            "nothing to learn from"
        )
    return WindowSplit(
        train=train,
        valid=valid,
        training_window=DateWindow(start=train_from, end=train_to),
        validation_window=DateWindow(start=valid_from, end=train_to),
    )


def train_fast_model(
    history: TransactionFrame,
    train_from: date,
    train_to: date,
    out_dir: str | Path,
    config: FastModelConfig = DEFAULT_CONFIG,
    data_path: str | Path | None = None,
    progress: bool = True,
    created_at: datetime | None = None,
) -> Manifest:
    """Train on ``train_from..train_to`` (calendar days) and write the artifact to ``out_dir``.

    ``data_path`` is the file ``history`` was read from; its SHA-256 goes in the manifest.
    ``created_at`` (default: now) fixes the manifest's timestamp for reproducible builds.
    Raises :class:`TrainingDataError` for a window that cannot train a model.
    """
    split = split_window(history, train_from, train_to, config.validation_days)
    labels = history.require_labels()
    # Rows after the window never enter an earlier row's (backward-looking) windows, so
    # leaving them out changes no value and saves their computation.
    upto = np.flatnonzero(history.day <= np.datetime64(train_to, "D"))
    x = compute_training_features(history.take(upto), progress)
    train, valid = split.train[upto], split.valid[upto]
    y = labels[upto].astype(np.int8)
    names = feature_names(DEFAULT_FEATURES)
    with tqdm(total=3, desc="training", unit="stage", disable=not progress) as stages:
        stages.set_postfix_str("fitting trees")
        booster = fit_booster(x[train], y[train], names, config, x[valid], y[valid])
        stages.update()
        stages.set_postfix_str("validating")
        scores = np.asarray(booster.predict(x[valid]), dtype=np.float64)
        thresholds = choose_thresholds(y[valid], scores)
        stages.update()
        stages.set_postfix_str("writing artifact")
        manifest = write_artifact(
            out_dir,
            booster,
            training_window=split.training_window,
            validation_window=split.validation_window,
            data_name=None if data_path is None else Path(data_path).name,
            data_sha256=None if data_path is None else sha256_file(data_path),
            rows={
                "train": int(train.sum()),
                "train_fraud": int(y[train].sum()),
                "validation": int(valid.sum()),
                "validation_fraud": int(y[valid].sum()),
            },
            metrics=_validation_metrics(y[valid], scores),
            config=config.to_dict(),
            thresholds=thresholds,
            created_at=created_at,
            # The whole window (training and validation days): what the model was built on.
            feature_distributions=describe_columns(x[train | valid], names),
        )
        stages.update()
    return manifest


def compute_training_features(history: TransactionFrame, progress: bool) -> np.ndarray:
    """The offline feature matrix of ``history``, with a progress bar."""
    with tqdm(
        total=len(DEFAULT_FEATURES), desc="features", unit="feature", disable=not progress
    ) as bar:

        def advance(step: int) -> None:
            bar.update(step)

        return compute_features(history, DEFAULT_FEATURES, progress=advance)


def _validation_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    def defined(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "validation_average_precision": defined(average_precision(labels, scores)),
        "validation_roc_auc": defined(roc_auc(labels, scores)),
        "validation_fraud_rate": float(labels.mean()),
    }


def _between(days: np.ndarray, start: date, end: date) -> np.ndarray:
    return (days >= np.datetime64(start, "D")) & (days <= np.datetime64(end, "D"))


def _as_date(day: np.datetime64) -> date:
    return date.fromisoformat(str(day.astype("datetime64[D]")))
