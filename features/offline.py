"""Batch computation of every feature over a whole history (training, evaluation).

Per entity, rows are sorted by (entity, time, file order); a window's bounds are then two
binary searches on a composite (entity, time) key, and its sums are differences of
per-entity prefix sums. Per-entity (not global) prefix sums keep the magnitudes small,
so a window mean is exact to ~1e-12 rather than drifting with the size of the file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.aggregations import AGGREGATION_CODES, feature_values
from features.data import DataError, TransactionFrame
from features.definitions import DEFAULT_FEATURES, MS_PER_DAY, Entity, FeatureDefinition
from features.plan import FeaturePlan, compile_plan

# Largest composite key we allow, with headroom below int64's limit.
_KEY_LIMIT = 2**62


def compute_features(
    history: TransactionFrame,
    definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Feature matrix (rows in ``history`` order, columns in ``definitions`` order).

    Labels (``history.label``) feed only delayed windows, exactly as if every label were
    known once its delay has passed. ``progress`` is called with 1 after each feature.
    """
    plan = compile_plan(definitions)
    out = np.empty((len(history), len(definitions)), dtype=np.float64)
    if len(history) == 0:
        return out
    zeros = np.zeros(len(history))
    for column, slot in enumerate(plan.slots):
        if slot.spec < 0:
            code = AGGREGATION_CODES[slot.definition.aggregation]
            local_ms = history.local_epoch_ms.astype(np.int64)
            out[:, column] = feature_values(
                code,
                zeros,
                zeros,
                zeros,
                zeros,
                history.amount,
                local_ms,
                zeros.astype(np.int64),
                0,
            )
            if progress:
                progress(1)
    for entity in plan.entities():
        _fill_entity(out, history, plan, entity, progress)
    return out


def _entity_codes(history: TransactionFrame, entity: Entity) -> np.ndarray:
    if entity is Entity.CUSTOMER:
        return pd.factorize(history.customer_id)[0].astype(np.int64)
    if entity is Entity.TERMINAL:
        return pd.factorize(history.terminal_id)[0].astype(np.int64)
    customer = pd.factorize(history.customer_id)[0].astype(np.int64)
    terminal = pd.factorize(history.terminal_id)[0].astype(np.int64)
    return pd.factorize(customer * (int(terminal.max()) + 1) + terminal)[0].astype(np.int64)


class _SortedEntity:
    """One entity's view of the history: sorted rows, segment starts, composite keys."""

    def __init__(self, history: TransactionFrame, entity: Entity, horizon_ms: int) -> None:
        codes = _entity_codes(history, entity)
        times = history.epoch_ms.astype(np.int64)
        self.order = np.lexsort((np.arange(len(times)), times, codes))
        self.codes = codes[self.order]
        self.times = times[self.order]
        self.position = np.arange(len(times), dtype=np.int64)
        first = np.ones(len(times), dtype=bool)
        first[1:] = self.codes[1:] != self.codes[:-1]
        self.segment_start = np.maximum.accumulate(np.where(first, self.position, 0))
        self.boundaries = np.append(np.flatnonzero(first), len(times))
        t0 = int(self.times.min())
        # The span exceeds any in-entity time difference plus the horizon, so a search
        # for (t - horizon) never crosses into the previous entity's keys.
        span = int(self.times.max()) - t0 + horizon_ms + 1
        if (int(self.codes.max()) + 1) * span >= _KEY_LIMIT:
            raise DataError(
                f"history spans {span // MS_PER_DAY:,} days over {int(self.codes.max()) + 1:,} "
                "entities, too much for one pass: check for mistyped dates or compute it in parts"
            )
        self.keys = self.codes * span + (self.times - t0)

    def first_after(self, offset_ms: int) -> np.ndarray:
        """Per row: first sorted index of the same entity with time > row time - offset."""
        return np.searchsorted(self.keys, self.keys - offset_ms, side="right")

    def segment_prefix(self, values: np.ndarray) -> np.ndarray:
        """Running sum of ``values`` (sorted order) restarting at every entity."""
        out = np.empty_like(values)
        bounds = self.boundaries
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            np.cumsum(values[start:stop], out=out[start:stop])
        return out

    def window_sum(self, prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum over sorted rows lo..hi inclusive (0 where the window is empty)."""
        upper = prefix[np.maximum(hi, 0)]
        lower = np.where(lo > self.segment_start, prefix[np.maximum(lo - 1, 0)], 0.0)
        return np.where(hi >= lo, upper - lower, 0.0)


def _fill_entity(
    out: np.ndarray,
    history: TransactionFrame,
    plan: FeaturePlan,
    entity: Entity,
    progress: Callable[[int], object] | None,
) -> None:
    view = _SortedEntity(history, entity, plan.horizon_ms(entity))
    amount = history.amount[view.order]
    local_ms = history.local_epoch_ms.astype(np.int64)[view.order]
    amount_prefix = view.segment_prefix(amount)
    square_prefix = view.segment_prefix(amount * amount)
    specs = plan.specs[entity]
    labels_prefix = None
    if any(spec.uses_labels for spec in specs):
        labels = history.require_labels()[view.order].astype(np.int64)
        labels_prefix = np.concatenate(([0], np.cumsum(labels)))
    gap = np.zeros(len(amount), dtype=np.int64)
    gap[1:] = view.times[1:] - view.times[:-1]
    for index, spec in enumerate(specs):
        lo = view.first_after(spec.horizon_ms)
        # A delayed window ends before its own transaction; an undelayed one at it.
        hi = view.first_after(spec.delay_ms) - 1 if spec.delay_ms else view.position
        n = np.maximum(hi - lo + 1, 0).astype(np.float64)
        s = view.window_sum(amount_prefix, lo, hi)
        q = view.window_sum(square_prefix, lo, hi)
        f = np.zeros(len(n), dtype=np.float64)
        if labels_prefix is not None:
            f = np.where(n > 0, labels_prefix[hi + 1] - labels_prefix[lo], 0).astype(np.float64)
        for column, slot in enumerate(plan.slots):
            if slot.definition.entity is not entity or slot.spec != index:
                continue
            code = AGGREGATION_CODES[slot.definition.aggregation]
            values = feature_values(code, n, s, q, f, amount, local_ms, gap, spec.window_ms)
            out[view.order, column] = values
            if progress:
                progress(1)
