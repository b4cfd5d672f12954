"""Rebuilds the online state from a recorded history, labels arriving after a delay.

This is how serving state is filled from a file, and how the parity tests check that
serving computes what training computed. (*Rebuild*, not *replay*: in this project a
replay is an idempotent retry answered from the audit store.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np

from features.data import TransactionFrame
from features.definitions import LABEL_DELAY
from features.online import OnlineFeatureEngine
from features.state import FeatureState


def rebuild_state(
    history: TransactionFrame,
    engine: FeatureState | None = None,
    label_delay: timedelta | None = LABEL_DELAY,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Apply ``history`` in file order; return each row's features as the engine saw them.

    With ``label_delay`` (and labels in the history), the label of a transaction at time
    *s* is fed just before the first transaction at or after *s + delay*: the moment the
    handbook assumes it becomes known. ``progress`` is called with row counts.
    """
    engine = engine or OnlineFeatureEngine()
    out = np.empty((len(history), len(engine.feature_names)), dtype=np.float64)
    feed_labels = label_delay is not None and history.label is not None
    delay_ms = int(label_delay.total_seconds() * 1000) if label_delay is not None else 0
    times = history.epoch_ms.tolist()
    ids = history.transaction_id.tolist()
    labels = history.label.tolist() if feed_labels and history.label is not None else []
    next_label = 0
    report_every = 10_000
    for row, fields in enumerate(history.iter_rows()):
        if feed_labels:
            now = times[row]
            while next_label < row and times[next_label] + delay_ms <= now:
                engine.record_label(ids[next_label], labels[next_label] == 1)
                next_label += 1
        engine.update_raw(*fields, out=out[row])
        if progress and row % report_every == report_every - 1:
            progress(report_every)
    if progress:
        progress(len(history) % report_every)
    return out
