"""The handbook's prequential protocol, so our numbers compare with its published ones.

A fold is named by its first training day *S*: training on days S..S+6, then 7 delay days
whose labels are not known yet (never trained on), then assessment on S+14..S+20. Features
are computed once over the whole history: their 30-day and label-delayed windows reach
back weeks before *S*, and they only ever use labels their delay allows.

On assessment day S+14+k, every transaction of a card with a fraud on any day S..S+6+k
is dropped: that card is already known to be compromised (blocked), and scoring it again
would only inflate the metrics.

Early stopping inside the 7-day training week: with ``config.validation_days = v > 0``
the model is first fit on the week's first 7 - v days and stopped on the AP of the last
v days; it is then refit on the whole week with the number of trees that run chose. Only
training-week labels are used, and the last training day -- the one closest to the
assessment week -- still trains the final model. ``v = 0`` grows ``config.num_trees``.

``Training.ALL_HISTORY`` is a variant, not the handbook's protocol: each fold trains on
every labelled day up to S+6. Its assessment sets are the handbook's, so the two compare.
Summaries over folds are mean and sample standard deviation (ddof=1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.data import TransactionFrame
from features.definitions import DEFAULT_FEATURES, MS_PER_DAY, FeatureDefinition
from features.offline import compute_features
from models.config import FastModelConfig
from models.metrics import (
    CARD_PRECISION_K,
    MeanStd,
    average_precision,
    card_precision_at_k,
    roc_auc,
)
from models.train.booster import fit_booster

TRAINING_DAYS = 7
DELAY_DAYS = 7
ASSESSMENT_DAYS = 7
METRICS = ("auc", "ap", "cp_at_100")
# Frozen, so one shared default instance is safe.
DEFAULT_CONFIG = FastModelConfig()


class CoverageError(ValueError):
    """The history does not contain every day a protocol needs."""


class Training(StrEnum):
    """Which labelled days a fold's model is trained on."""

    WEEK = "training-week"  # the handbook's: days S..S+6 only
    ALL_HISTORY = "all-history"  # every day up to S+6: not the handbook's protocol


@dataclass(frozen=True)
class Fold:
    """One train / delay / assessment split, named by its first training day."""

    start: date

    @property
    def training_last(self) -> date:
        return self.start + timedelta(days=TRAINING_DAYS - 1)

    @property
    def assessment_first(self) -> date:
        return self.start + timedelta(days=TRAINING_DAYS + DELAY_DAYS)

    @property
    def assessment_last(self) -> date:
        return self.assessment_first + timedelta(days=ASSESSMENT_DAYS - 1)


@dataclass(frozen=True)
class EvaluationProtocol:
    """A named set of folds and the training rule every fold follows."""

    name: str
    fold_starts: tuple[date, ...]
    training: Training = Training.WEEK

    @property
    def label(self) -> str:
        """The name shown in output: the all-history variant is a different protocol."""
        if self.training is Training.WEEK:
            return self.name
        return f"{self.name}+{self.training.value}"

    def folds(self) -> tuple[Fold, ...]:
        return tuple(Fold(start) for start in self.fold_starts)

    def with_training(self, training: Training) -> EvaluationProtocol:
        return replace(self, training=training)


HANDBOOK_VALIDATION = EvaluationProtocol(
    "handbook-validation",
    (date(2018, 7, 11), date(2018, 7, 4), date(2018, 6, 27), date(2018, 6, 20)),
)
HANDBOOK_TEST = EvaluationProtocol(
    "handbook-test",
    (date(2018, 8, 15), date(2018, 8, 8), date(2018, 8, 1), date(2018, 7, 25)),
)
PROTOCOLS: dict[str, EvaluationProtocol] = {p.name: p for p in (HANDBOOK_VALIDATION, HANDBOOK_TEST)}


def get_protocol(name: str, training: Training = Training.WEEK) -> EvaluationProtocol:
    try:
        return PROTOCOLS[name].with_training(training)
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


def warmup_days(definitions: Sequence[FeatureDefinition] = DEFAULT_FEATURES) -> int:
    """Days of history a feature can reach back: the longest window plus its delay."""
    horizon_ms = max((d.window_ms + d.delay_ms for d in definitions), default=0)
    return math.ceil(horizon_ms / MS_PER_DAY)


def check_coverage(days: np.ndarray, protocol: EvaluationProtocol, warmup: int) -> None:
    """Raise :class:`CoverageError` naming the days ``protocol`` needs that have no rows.

    Each fold needs every day from ``warmup`` days before its training week (so the first
    training rows have full feature windows) to the end of its assessment week.
    """
    day_numbers = np.unique(np.asarray(days, dtype="datetime64[D]").astype(np.int64))
    needed: set[int] = set()
    for fold in protocol.folds():
        first = _day_number(fold.start) - warmup
        needed.update(range(first, _day_number(fold.assessment_last) + 1))
    missing = sorted(needed.difference(day_numbers.tolist()))
    if not missing:
        return
    held = (
        f"{_date(int(day_numbers[0]))}..{_date(int(day_numbers[-1]))}"
        if day_numbers.size
        else "no transactions"
    )
    raise CoverageError(
        f"protocol {protocol.label} needs transactions on every day "
        f"{_date(min(needed))}..{_date(max(needed))} ({warmup} days of feature history "
        f"before each training week, then training, delay and assessment weeks); the data "
        f"({held}) has none on {_ranges(missing)}"
    )


def known_compromised(
    days: np.ndarray, cards: np.ndarray, labels: np.ndarray, fold: Fold
) -> np.ndarray:
    """Mask of assessment-week rows whose card had a fraud on a day S..S+6+k before them.

    ``cards`` are integer codes 0..n-1 (``pd.factorize``). For a row on day S+14+k the card
    is known compromised if it had a fraud on any day from S to S+6+k: the training week,
    then one more delay day per assessment day, whose label has arrived by then.
    """
    day_numbers = np.asarray(days, dtype="datetime64[D]").astype(np.int64)
    start = _day_number(fold.start)
    # A label arrives DELAY_DAYS after its day, so day d knows frauds up to d - DELAY - 1.
    last_known = day_numbers - DELAY_DAYS - 1
    window = (day_numbers >= start) & (day_numbers <= _day_number(fold.assessment_last))
    fraud = window & (np.asarray(labels) == 1)
    no_fraud = np.iinfo(np.int64).max
    first_fraud = np.full(int(cards.max()) + 1 if cards.size else 0, no_fraud, dtype=np.int64)
    np.minimum.at(first_fraud, cards[fraud], day_numbers[fraud])
    assessed = (day_numbers >= _day_number(fold.assessment_first)) & (
        day_numbers <= _day_number(fold.assessment_last)
    )
    return assessed & (first_fraud[cards] <= last_known)


@dataclass(frozen=True)
class PreparedHistory:
    """A history's feature matrix and the columns the protocol needs, computed once."""

    features: np.ndarray
    feature_names: tuple[str, ...]
    labels: np.ndarray
    days: np.ndarray  # datetime64[D], calendar day of each row
    cards: np.ndarray  # int64 codes of CUSTOMER_ID
    warmup: int


def prepare(
    history: TransactionFrame,
    protocol: EvaluationProtocol,
    definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
    progress: Callable[[int], None] | None = None,
) -> PreparedHistory:
    """Check the history covers ``protocol``, then compute every feature once."""
    labels = history.require_labels()
    days = history.day
    warmup = warmup_days(definitions)
    check_coverage(days, protocol, warmup)
    features = compute_features(history, definitions, progress=progress)
    return PreparedHistory(
        features=features,
        feature_names=tuple(d.name for d in definitions),
        labels=labels,
        days=days,
        cards=pd.factorize(history.customer_id)[0].astype(np.int64),
        warmup=warmup,
    )


@dataclass(frozen=True)
class FoldResult:
    """One fold's model and its scores on the assessment week."""

    fold: Fold
    training_rows: int
    training_frauds: int
    assessed_rows: int
    assessed_frauds: int
    removed_rows: int  # known-compromised rows dropped from the assessment week
    trees: int
    auc: float
    ap: float
    cp_at_100: float
    # CP@100 of a perfect ranking: how many compromised cards there are to find at all.
    cp_at_100_ceiling: float

    def metric(self, name: str) -> float:
        if name not in METRICS:
            raise KeyError(name)
        return float(getattr(self, name))

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.fold.start.isoformat(),
            "assessment": [
                self.fold.assessment_first.isoformat(),
                self.fold.assessment_last.isoformat(),
            ],
            "training_rows": self.training_rows,
            "training_frauds": self.training_frauds,
            "assessed_rows": self.assessed_rows,
            "assessed_frauds": self.assessed_frauds,
            "removed_rows": self.removed_rows,
            "trees": self.trees,
            **{name: _json_float(self.metric(name)) for name in METRICS},
            "cp_at_100_ceiling": _json_float(self.cp_at_100_ceiling),
        }


@dataclass(frozen=True)
class ModelResult:
    """One model's folds under a protocol."""

    name: str
    folds: tuple[FoldResult, ...]

    def summary(self) -> dict[str, MeanStd]:
        return {m: MeanStd.of([f.metric(m) for f in self.folds]) for m in METRICS}


@dataclass(frozen=True)
class EvaluationResult:
    """Every evaluated model under one protocol; models are keyed by name ("fast", ...)."""

    protocol: EvaluationProtocol
    models: dict[str, ModelResult]

    def to_json(self) -> dict[str, Any]:
        results = {
            name: {
                metric: {"mean": _json_float(s.mean), "std": _json_float(s.std)}
                for metric, s in model.summary().items()
            }
            for name, model in self.models.items()
        }
        return {
            "protocol": self.protocol.label,
            "training": self.protocol.training.value,
            "fold_starts": [start.isoformat() for start in self.protocol.fold_starts],
            "results": results,
            "folds": {name: [f.to_json() for f in m.folds] for name, m in self.models.items()},
        }


def run_fold(
    prepared: PreparedHistory,
    fold: Fold,
    config: FastModelConfig = DEFAULT_CONFIG,
    training: Training = Training.WEEK,
) -> tuple[FoldResult, lgb.Booster]:
    """Train one fold's model and score its assessment week."""
    day_numbers = prepared.days.astype(np.int64)
    start, last = _day_number(fold.start), _day_number(fold.training_last)
    in_training = day_numbers <= last
    if training is Training.WEEK:
        in_training &= day_numbers >= start
    booster = _fit(prepared, np.flatnonzero(in_training), config)

    first, final = _day_number(fold.assessment_first), _day_number(fold.assessment_last)
    in_week = (day_numbers >= first) & (day_numbers <= final)
    removed = known_compromised(prepared.days, prepared.cards, prepared.labels, fold)
    rows = np.flatnonzero(in_week & ~removed)
    scores = np.asarray(booster.predict(prepared.features[rows]), dtype=np.float64)
    labels = prepared.labels[rows]
    days, cards = day_numbers[rows], prepared.cards[rows]
    result = FoldResult(
        fold=fold,
        training_rows=int(in_training.sum()),
        training_frauds=int(prepared.labels[in_training].sum()),
        assessed_rows=len(rows),
        assessed_frauds=int(labels.sum()),
        removed_rows=int(removed.sum()),
        trees=booster.num_trees(),
        auc=roc_auc(labels, scores),
        ap=average_precision(labels, scores),
        cp_at_100=card_precision_at_k(days, cards, labels, scores, CARD_PRECISION_K),
        cp_at_100_ceiling=card_precision_at_k(days, cards, labels, labels, CARD_PRECISION_K),
    )
    return result, booster


def _fit(prepared: PreparedHistory, rows: np.ndarray, config: FastModelConfig) -> lgb.Booster:
    x, y = prepared.features[rows], prepared.labels[rows]
    names = prepared.feature_names
    day_numbers = prepared.days[rows].astype(np.int64)
    held_days = config.validation_days
    if held_days <= 0 or np.unique(day_numbers).size <= held_days:
        return fit_booster(x, y, names, config)
    cutoff = int(day_numbers.max()) - held_days + 1
    fit, held = day_numbers < cutoff, day_numbers >= cutoff
    stopped = fit_booster(x[fit], y[fit], names, config, x[held], y[held])
    # Refit on the whole week: the held-out days are the most recent labelled data.
    return fit_booster(x, y, names, replace(config, num_trees=stopped.num_trees()))


def evaluate_prepared(
    prepared: PreparedHistory,
    protocol: EvaluationProtocol,
    config: FastModelConfig = DEFAULT_CONFIG,
    model_name: str = "fast",
    on_fold: Callable[[FoldResult], None] | None = None,
) -> EvaluationResult:
    """Run every fold of ``protocol`` on already computed features."""
    check_coverage(prepared.days, protocol, prepared.warmup)
    results = []
    for fold in protocol.folds():
        result, _ = run_fold(prepared, fold, config, protocol.training)
        results.append(result)
        if on_fold:
            on_fold(result)
    return EvaluationResult(protocol, {model_name: ModelResult(model_name, tuple(results))})


def evaluate(
    history: TransactionFrame,
    protocol: EvaluationProtocol,
    config: FastModelConfig = DEFAULT_CONFIG,
    definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> EvaluationResult:
    """The fast model under ``protocol``: coverage check, features, then every fold."""
    prepared = prepare(history, protocol, definitions)
    return evaluate_prepared(prepared, protocol, config, on_fold=on_fold)


def _day_number(day: date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


def _date(day_number: int) -> str:
    return str(np.datetime64(day_number, "D"))


def _ranges(day_numbers: list[int]) -> str:
    """Sorted day numbers as compact ranges: '2018-08-08..2018-09-04, 2018-09-10'."""
    parts: list[str] = []
    run_start = previous = day_numbers[0]
    for day in [*day_numbers[1:], None]:
        if day is not None and day == previous + 1:
            previous = day
            continue
        parts.append(
            _date(run_start) if run_start == previous else f"{_date(run_start)}..{_date(previous)}"
        )
        if day is not None:
            run_start = previous = day
    return ", ".join(parts)


def _json_float(value: float) -> float | None:
    # JSON has no NaN: an undefined metric (no fraud in a week) becomes null.
    return None if math.isnan(value) else float(value)
