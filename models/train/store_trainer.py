"""Trains a fast model on decisions read back from the audit store.

The rows are the feature vectors exactly as they were decided, so the new model sees what
serving computed (no training/serving skew by construction), and the labels as they were
received. Unlabelled payments follow the label policy (``label_policy.py``, shared with
the challenger report): declined ones and those within the label delay are left out,
counted (counting a declined payment legitimate would teach the model that what the
champion declined was fine); the others are taken as legitimate.

Validation is a later slice (the window's last days, or a given one); the new model's
metrics stand beside the champion's scores as recorded on the very same payments.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.artifacts import DateWindow, Manifest, write_artifact
from models.config import FastModelConfig
from models.distributions import describe_columns
from models.metrics import CARD_PRECISION_K, average_precision, card_precision_at_k, roc_auc
from models.thresholds import choose_thresholds
from models.train.booster import fit_booster
from models.train.fast_trainer import TrainingDataError
from models.train.label_policy import LabelPolicy, Targets, label_targets

DEFAULT_CONFIG = FastModelConfig()
DAY_MS = 86_400_000
SOURCE = "audit-store"


@dataclass(frozen=True)
class StoredWindow:
    """The decisions of a window as arrays, one row per payment, in event-time order."""

    feature_names: tuple[str, ...]
    x: np.ndarray  # float64, the values as decided
    epoch_ms: np.ndarray  # int64
    cards: np.ndarray  # customer ids (CP@k ranks cards)
    declined: np.ndarray  # bool: the recorded action was decline
    labels: np.ndarray  # int8: 1 fraud, 0 legitimate, UNKNOWN
    champion_scores: np.ndarray  # float64, the score each decision recorded
    champion_versions: tuple[str, ...]  # the versions that decided, for the report

    def __len__(self) -> int:
        return len(self.epoch_ms)


def targets(window: StoredWindow, policy: LabelPolicy) -> Targets:
    """Apply the label policy (``label_policy.py``) to every payment of the window."""
    return label_targets(window.epoch_ms, window.declined, window.labels, policy)


@dataclass(frozen=True)
class Windows:
    """The training days and the (later) validation days."""

    train: DateWindow
    validate: DateWindow

    @classmethod
    def of(
        cls,
        train_from: date,
        train_to: date,
        validation_days: int,
        validate_from: date | None = None,
        validate_to: date | None = None,
    ) -> Windows:
        """The last ``validation_days`` of the window, or the given later slice."""
        if train_from > train_to:
            raise TrainingDataError(f"--train-from {train_from} is after --train-to {train_to}")
        if (validate_from is None) != (validate_to is None):
            raise TrainingDataError("give both --validate-from and --validate-to, or neither")
        if validate_from is not None and validate_to is not None:
            if validate_from > validate_to:
                raise TrainingDataError(
                    f"--validate-from {validate_from} is after --validate-to {validate_to}"
                )
            if validate_from <= train_to:
                raise TrainingDataError(
                    f"validation {validate_from}..{validate_to} must start after the "
                    f"training days end ({train_to}): the new model must not have seen it"
                )
            return cls(
                DateWindow(start=train_from, end=train_to),
                DateWindow(start=validate_from, end=validate_to),
            )
        days = (train_to - train_from).days + 1
        if validation_days >= days:
            raise TrainingDataError(
                f"validation needs 1 to {days - 1} of the window's {days} days, "
                f"got {validation_days} (or give --validate-from/--validate-to)"
            )
        valid_from = train_to - timedelta(days=validation_days - 1)
        return cls(
            DateWindow(start=train_from, end=valid_from - timedelta(days=1)),
            DateWindow(start=valid_from, end=train_to),
        )

    @property
    def first(self) -> date:
        return self.train.start

    @property
    def last(self) -> date:
        return max(self.train.end, self.validate.end)


def day_bounds_ms(first: date, last: date) -> tuple[int, int]:
    """Epoch ms of ``first``'s start (UTC) and of the day after ``last``."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(start.timestamp() * 1000) + (
        (last - first).days + 1
    ) * DAY_MS


def train_from_store(
    window: StoredWindow,
    windows: Windows,
    policy: LabelPolicy,
    out_dir: str | Path,
    config: FastModelConfig = DEFAULT_CONFIG,
    progress: bool = True,
    created_at: datetime | None = None,
) -> Manifest:
    """Train on the training days of ``window`` and write the artifact to ``out_dir``."""
    if len(window) == 0:
        raise TrainingDataError(
            f"the audit store holds no decision in {windows.first}..{windows.last}"
        )
    target = targets(window, policy)
    train = target.kept & _within(window.epoch_ms, windows.train)
    valid = target.kept & _within(window.epoch_ms, windows.validate)
    y = target.y
    if target.counts["labelled"] == 0:
        raise TrainingDataError(
            f"no decision in {windows.first}..{windows.last} has a label known by "
            f"{policy.as_of:%Y-%m-%d %H:%M} UTC: send labels (POST /labels or the labels "
            "topic) before retraining"
        )
    for part, mask, span in (
        ("training", train, windows.train),
        ("validation", valid, windows.validate),
    ):
        if not mask.any():
            raise TrainingDataError(
                f"the {part} days {span.start}..{span.end} hold no payment with a usable label"
            )
    if not y[train].any():
        raise TrainingDataError(
            f"no fraud among the training days {windows.train.start}..{windows.train.end}: "
            "nothing to learn from"
        )
    names = list(window.feature_names)
    with tqdm(total=3, desc="training", unit="stage", disable=not progress) as stages:
        stages.set_postfix_str("fitting trees")
        booster = fit_booster(window.x[train], y[train], names, config, window.x[valid], y[valid])
        stages.update()
        stages.set_postfix_str("validating")
        scores = np.asarray(booster.predict(window.x[valid]), dtype=np.float64)
        days = window.epoch_ms[valid] // DAY_MS
        cards = window.cards[valid]
        metrics = {
            **_metrics("validation", y[valid], scores, days, cards),
            **_metrics("champion_validation", y[valid], window.champion_scores[valid], days, cards),
            "validation_fraud_rate": float(y[valid].mean()),
        }
        stages.update()
        stages.set_postfix_str("writing artifact")
        used = train | valid
        manifest = write_artifact(
            out_dir,
            booster,
            training_window=DateWindow(start=windows.first, end=windows.last),
            validation_window=windows.validate,
            data_name=SOURCE,
            data_sha256=_data_sha256(window, y, used),
            rows={
                "train": int(train.sum()),
                "train_fraud": int(y[train].sum()),
                "validation": int(valid.sum()),
                "validation_fraud": int(y[valid].sum()),
                **target.counts,
            },
            metrics=metrics,
            config={
                **config.to_dict(),
                "source": SOURCE,
                "labels_known_by": policy.as_of.isoformat(),
                "label_delay_days": policy.delay / timedelta(days=1),
                "declined_without_label": "excluded from training and validation, counted",
                "unlabelled_within_delay": "excluded from training and validation, counted",
                "unlabelled_after_delay": "taken as legitimate",
                "champion_versions": list(window.champion_versions),
            },
            thresholds=choose_thresholds(y[valid], scores),
            created_at=created_at,
            feature_distributions=describe_columns(window.x[used], names),
        )
        stages.update()
    return manifest


def _metrics(
    prefix: str, labels: np.ndarray, scores: np.ndarray, days: np.ndarray, cards: np.ndarray
) -> dict[str, float | None]:
    def defined(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        f"{prefix}_average_precision": defined(average_precision(labels, scores)),
        f"{prefix}_roc_auc": defined(roc_auc(labels, scores)),
        f"{prefix}_cp_at_{CARD_PRECISION_K}": card_precision_at_k(
            days, cards, labels, scores, CARD_PRECISION_K
        ),
    }


def _within(epoch_ms: np.ndarray, span: DateWindow) -> np.ndarray:
    start, end = day_bounds_ms(span.start, span.end)
    return (epoch_ms >= start) & (epoch_ms < end)


def _data_sha256(window: StoredWindow, y: np.ndarray, used: np.ndarray) -> str:
    """A checksum of exactly what the model saw: the feature matrix and the targets."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(window.x[used]).tobytes())
    digest.update(np.ascontiguousarray(y[used]).tobytes())
    return digest.hexdigest()
