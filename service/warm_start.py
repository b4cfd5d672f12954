"""Rebuilding the in-process state from the audit store at start-up, and readying the hot path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from explain.audit.store import RebuildEvent, RebuildSource
from features.checkpoint import CheckpointError, CheckpointInfo, load_checkpoint
from features.online import OnlineFeatureEngine
from features.sequence import SequenceStore
from features.state import FeatureState
from models.cascade import Cascade
from service.fast_path import FastPath

log = logging.getLogger(__name__)

# After a checkpoint of an older version (no write-order mark in it), payments are
# replayed from this long before the latest one it covers: one decided before the
# checkpoint but recorded after it (the audit write follows the state update), or one
# that arrived up to that late, is still applied. A checkpoint with its mark replays
# exactly what the store wrote after it, whatever its event time. Either way the replay
# refuses by id the ones the checkpoint already holds.
CHECKPOINT_OVERLAP_MS = 3_600_000

# Events per compiled call while replaying: large enough that per-call overhead vanishes.
REPLAY_CHUNK = 4096


def rebuild(
    store: RebuildSource,
    engine: FeatureState,
    sequences: SequenceStore | None,
    progress: Callable[[int], object] | None = None,
    checkpoint: Path | None = None,
    refill: bool = False,
) -> int:
    """Replay the stored transactions any window can still see (the longest window plus
    its delay back from the latest one), then their latest labels: the state a process
    that never stopped would hold. Returns the transactions replayed.

    A persistent state (Redis) already holds the windows and the customers' sequences:
    nothing is replayed.

    With a usable ``checkpoint`` of the in-process state, only the payments the store
    wrote after it are replayed (after its event time less :data:`CHECKPOINT_OVERLAP_MS`,
    for a checkpoint without a write-order mark); labels are applied again (idempotent).
    ``refill`` replays into a persistent state too (``riskscore state rebuild``: an empty
    or lost Redis), sequences included; what it already holds is refused by id."""
    latest = store.latest_event_ms()
    if latest is None:
        return 0
    if engine.persistent and not refill:
        if sequences is not None and not sequences.persistent:
            rebuild_sequences(store, sequences, latest)
        return 0
    since = latest - engine.plan.longest_horizon_ms
    labels_since = since
    written_after = None
    if checkpoint is not None and isinstance(engine, OnlineFeatureEngine):
        info = _load(checkpoint, engine)
        if info is not None and info.written_mark is not None:
            written_after = info.written_mark
        elif info is not None:
            since = max(since, info.covers_ms - CHECKPOINT_OVERLAP_MS)
    replayed = 0
    events = store.rebuild_events(since, written_after)
    for chunk in _chunks(events, REPLAY_CHUNK):
        update = engine.update_all(chunk)
        # Refused ids were applied by an earlier warm start of this engine.
        replayed += len(chunk) - len(update.refused)
        if progress is not None:
            progress(len(chunk))
    for transaction_id, is_fraud in store.latest_labels(labels_since):
        engine.record_label(transaction_id, is_fraud)
    if sequences is not None:
        rebuild_sequences(store, sequences, latest)
    return replayed


def _load(checkpoint: Path, engine: OnlineFeatureEngine) -> CheckpointInfo | None:
    """What a checkpoint covers, once loaded into ``engine``; None (and a warning) when
    there is none or it cannot be used: then everything is replayed."""
    if not checkpoint.exists():
        return None
    try:
        info = load_checkpoint(checkpoint, engine)
    except CheckpointError as exc:
        log.warning("feature checkpoint not used, replaying the audit store: %s", exc)
        return None
    log.info("feature state loaded from %s (%d payments applied)", checkpoint, info.payments)
    return info


def _chunks(events: Iterator[RebuildEvent], size: int) -> Iterator[list[RebuildEvent]]:
    while chunk := list(islice(events, size)):
        yield chunk


def rebuild_sequences(store: RebuildSource, sequences: SequenceStore, latest_ms: int) -> None:
    """Refill the customers' sequences with the feature vectors as they were decided.

    Not from the replay above: it applies labels only at its end, so its vectors lack
    the label-dependent values the fast path saw at the time.
    """
    spec = sequences.spec
    for stored in store.recent_feature_vectors(latest_ms - spec.max_age_ms, spec.length):
        x = np.array([[stored.features.get(name, np.nan) for name in spec.feature_names]])
        sequences.append_many(
            [stored.customer_id],
            [stored.transaction_id],
            [stored.epoch_ms],
            [stored.amount],
            x,
            [False],
        )


def compile_hot_path(engine: FeatureState, fast_path: FastPath, cascade: Cascade | None) -> None:
    """Run every scoring step once on scratch state, so the first real payment does not
    pay for loading compiled kernels and LightGBM's lazy set-up (~0.4 s measured)."""
    scratch = OnlineFeatureEngine(tuple(slot.definition for slot in engine.plan.slots))
    day = 86_400_000
    for i, t in enumerate((day, 2 * day, 10 * day)):
        x = scratch.update_raw(f"warm-{i}", "c", "t", t, t, 10.0 + i)
    scratch.record_label("warm-0", True)
    scratch.expire(100 * day)
    scratch.compile_kernels()
    bundle = fast_path.bundle()
    for rows in (x.reshape(1, -1), np.repeat(x.reshape(1, -1), 4, axis=0)):
        bundle.model.predict_raw(rows)
        contributions = bundle.explainer.contributions(rows)
        bundle.coder.code_many(rows, contributions)
    if cascade is not None:
        spec = cascade.model.spec
        sequence = np.zeros((spec.length, spec.width))
        sequence[-2:, -1] = 1.0
        cascade.model.logits(sequence[None])
        cascade.model.logits(np.stack([sequence, sequence]))
        cascade.model.explain([sequence])
