"""Reads a window of decisions from the audit store into the arrays retraining takes:
the feature values as they were decided, in the current feature order, never recomputed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from explain.audit.store import TrainingSource
from models.train.fast_trainer import TrainingDataError
from models.train.label_policy import UNKNOWN
from models.train.store_trainer import StoredWindow


def read_window(
    source: TrainingSource,
    start_ms: int,
    end_ms: int,
    labels_known_by_ms: int,
    feature_names: Sequence[str],
    progress: bool = True,
) -> StoredWindow:
    """Every decision with ``start_ms`` <= event time < ``end_ms`` as a :class:`StoredWindow`
    whose columns are ``feature_names``; a decision stored without one of them (scored by
    a model of other features) is refused by name rather than filled in."""
    names = tuple(feature_names)
    # Rows stored with the same schema share one column map: usually every row.
    columns: dict[tuple[str, ...], np.ndarray | None] = {names: None}
    vectors: list[np.ndarray] = []
    epoch_ms: list[int] = []
    cards: list[str] = []
    declined: list[bool] = []
    labels: list[int] = []
    scores: list[float] = []
    versions: dict[str, None] = {}
    rows = source.training_rows(start_ms, end_ms, labels_known_by_ms)
    for row in tqdm(rows, desc="reading decisions", unit="payment", disable=not progress):
        if row.feature_names not in columns:
            columns[row.feature_names] = _column_map(row.feature_names, names, row.model_version)
        order = columns[row.feature_names]
        vectors.append(row.values if order is None else row.values[order])
        epoch_ms.append(row.epoch_ms)
        cards.append(row.customer_id)
        declined.append(row.action == "decline")
        labels.append(UNKNOWN if row.is_fraud is None else int(row.is_fraud))
        scores.append(row.score)
        versions.setdefault(row.model_version)
    x = np.vstack(vectors) if vectors else np.empty((0, len(names)), dtype=np.float64)
    return StoredWindow(
        feature_names=names,
        x=x,
        epoch_ms=np.asarray(epoch_ms, dtype=np.int64),
        cards=np.asarray(cards, dtype=object),
        declined=np.asarray(declined, dtype=bool),
        labels=np.asarray(labels, dtype=np.int8),
        champion_scores=np.asarray(scores, dtype=np.float64),
        champion_versions=tuple(versions),
    )


def _column_map(stored: tuple[str, ...], wanted: tuple[str, ...], version: str) -> np.ndarray:
    missing = [name for name in wanted if name not in stored]
    if missing:
        raise TrainingDataError(
            f"decisions of model {version} were stored without the features "
            f"{', '.join(missing)}: retrain from a window scored with the current features, "
            "or from a history file (--data)"
        )
    position = {name: i for i, name in enumerate(stored)}
    return np.array([position[name] for name in wanted], dtype=np.intp)
