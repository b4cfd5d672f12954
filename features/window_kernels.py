"""Compiled kernels behind the online engine: per-entity event rings and window statistics.

Layout (all entities of every kind share it; an entity is a *slot*):

* ``meta[slot]``: ring start and capacity in the pool, first retained and next sequence
  number, latest event time, kind, and a generation bumped on reuse (stale label
  references then miss instead of touching another entity).
* ``bounds[slot, spec]``: first and one-past-last sequence number inside the window.
* ``stats[slot, spec]``: count, amount sum, sum of squares, known frauds.
* ``pool[field, i]``: event time, amount and label; a slot's events live in a ring of
  power-of-two capacity at ``pool[:, start:start+cap]``, indexed by ``seq & (cap-1)``.

A kernel that would need more pool than exists returns ``NEED_POOL`` before changing any
statistics; the caller grows the pool and calls again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from features.aggregations import feature_value

# meta columns
START, CAP, HEAD, NEXT, LAST_MS, KIND, GEN = range(7)
META_FIELDS = 7
# bounds columns
LO, HI = 0, 1
# stats columns
N, SUM, SQ, FRAUD = range(4)
# pool rows
P_TIME, P_AMOUNT, P_LABEL = range(3)
# spec table columns
SPEC_WINDOW, SPEC_DELAY, SPEC_LABELS = range(3)
# output table columns: column, kind (-1 = the transaction itself), spec, aggregation, window
O_COLUMN, O_KIND, O_SPEC, O_CODE, O_WINDOW = range(5)
# pool_meta fields
USED = 0

INITIAL_RING = 4
NEED_POOL = -1
NEVER = -(2**62)


@njit(cache=True, nogil=True)
def _ensure_room(slot, meta, pool, pool_meta):
    """Make room for one more event in ``slot``'s ring; False if the pool is full."""
    cap = meta[slot, CAP]
    if meta[slot, NEXT] - meta[slot, HEAD] < cap:
        return True
    new_cap = INITIAL_RING if cap == 0 else cap * 2
    new_start = pool_meta[USED]
    if new_start + new_cap > pool.shape[1]:
        return False
    old_start = meta[slot, START]
    for seq in range(meta[slot, HEAD], meta[slot, NEXT]):
        src = old_start + (seq & (cap - 1))
        dst = new_start + (seq & (new_cap - 1))
        for field in range(pool.shape[0]):
            pool[field, dst] = pool[field, src]
    pool_meta[USED] = new_start + new_cap
    meta[slot, START] = new_start
    meta[slot, CAP] = new_cap
    return True


@njit(cache=True, nogil=True)
def _at(meta, slot, seq):
    return meta[slot, START] + (seq & (meta[slot, CAP] - 1))


@njit(cache=True, nogil=True)
def _add(stats, slot, spec, pool, i, with_label):
    value = pool[P_AMOUNT, i]
    stats[slot, spec, N] += 1.0
    stats[slot, spec, SUM] += value
    stats[slot, spec, SQ] += value * value
    if with_label:
        stats[slot, spec, FRAUD] += pool[P_LABEL, i]


@njit(cache=True, nogil=True)
def _remove(stats, slot, spec, pool, i, with_label):
    value = pool[P_AMOUNT, i]
    stats[slot, spec, N] -= 1.0
    stats[slot, spec, SUM] -= value
    stats[slot, spec, SQ] -= value * value
    if with_label:
        stats[slot, spec, FRAUD] -= pool[P_LABEL, i]
    if stats[slot, spec, N] == 0.0:
        # An empty window has exactly zero sums: drop the rounding the removals left.
        stats[slot, spec, SUM] = 0.0
        stats[slot, spec, SQ] = 0.0
        stats[slot, spec, FRAUD] = 0.0


@njit(cache=True, nogil=True)
def _advance(slot, t, amount, meta, bounds, stats, pool, specs, n_specs):
    """Append the event to the slot and move every window to time ``t``; returns its seq."""
    seq = meta[slot, NEXT]
    i = _at(meta, slot, seq)
    pool[P_TIME, i] = t
    pool[P_AMOUNT, i] = amount
    pool[P_LABEL, i] = 0.0
    meta[slot, NEXT] = seq + 1
    meta[slot, LAST_MS] = t
    kind = meta[slot, KIND]
    keep_from = seq
    for spec in range(n_specs[kind]):
        window = specs[kind, spec, SPEC_WINDOW]
        delay = specs[kind, spec, SPEC_DELAY]
        with_label = specs[kind, spec, SPEC_LABELS] != 0
        if delay == 0:
            # The current event is inside its own window.
            bounds[slot, spec, HI] = seq + 1
            _add(stats, slot, spec, pool, i, False)
        else:
            upper = t - delay
            hi = bounds[slot, spec, HI]
            while hi < seq and pool[P_TIME, _at(meta, slot, hi)] <= upper:
                _add(stats, slot, spec, pool, _at(meta, slot, hi), with_label)
                hi += 1
            bounds[slot, spec, HI] = hi
        lower = t - delay - window
        lo = bounds[slot, spec, LO]
        while lo < bounds[slot, spec, HI] and pool[P_TIME, _at(meta, slot, lo)] <= lower:
            _remove(stats, slot, spec, pool, _at(meta, slot, lo), with_label)
            lo += 1
        bounds[slot, spec, LO] = lo
        keep_from = min(keep_from, lo)
    # Events before every window's start can never be seen again: free their ring cells.
    meta[slot, HEAD] = keep_from
    return seq


@njit(cache=True, nogil=True)
def _reset(slot, kind, meta, bounds, stats):
    """Give a slot to a new entity: empty history, next generation."""
    generation = meta[slot, GEN] + 1
    meta[slot, :] = 0
    meta[slot, GEN] = generation
    meta[slot, KIND] = kind
    meta[slot, LAST_MS] = NEVER
    bounds[slot, :, :] = 0
    stats[slot, :, :] = 0.0


@njit(cache=True, nogil=True)
def update(
    slots,
    fresh,
    t,
    local_ms,
    amount,
    meta,
    bounds,
    stats,
    pool,
    pool_meta,
    specs,
    n_specs,
    outputs,
    out,
    refs,
):
    """Apply one transaction to its entities (one slot per kind) and fill its features.

    ``fresh[k]`` marks a slot just given to a new entity. ``refs[k]`` receives the
    (generation, seq) under which the event can later be labelled. Returns 0, or
    NEED_POOL (no statistics changed) when a ring must grow past the pool.
    """
    for k in range(len(slots)):
        if fresh[k]:
            _reset(slots[k], k, meta, bounds, stats)
            fresh[k] = 0
    for k in range(len(slots)):
        if not _ensure_room(slots[k], meta, pool, pool_meta):
            return NEED_POOL
    gaps = np.zeros(len(slots), dtype=np.int64)
    for k in range(len(slots)):
        slot = slots[k]
        # Per-entity monotone time: a late event counts at its entity's latest time.
        t_k = max(t, meta[slot, LAST_MS])
        previous = meta[slot, LAST_MS]
        refs[k, 0] = meta[slot, GEN]
        refs[k, 1] = _advance(slot, t_k, amount, meta, bounds, stats, pool, specs, n_specs)
        gaps[k] = t_k - previous
    for row in range(outputs.shape[0]):
        kind = outputs[row, O_KIND]
        code = outputs[row, O_CODE]
        if kind < 0:
            out[outputs[row, O_COLUMN]] = feature_value(
                code, 0.0, 0.0, 0.0, 0.0, amount, local_ms, 0, 0
            )
            continue
        slot = slots[kind]
        spec = outputs[row, O_SPEC]
        out[outputs[row, O_COLUMN]] = feature_value(
            code,
            stats[slot, spec, N],
            stats[slot, spec, SUM],
            stats[slot, spec, SQ],
            stats[slot, spec, FRAUD],
            amount,
            local_ms,
            gaps[kind],
            outputs[row, O_WINDOW],
        )
    return 0


@njit(cache=True, nogil=True)
def update_many(
    slots,
    fresh,
    t,
    local_ms,
    amount,
    start,
    meta,
    bounds,
    stats,
    pool,
    pool_meta,
    specs,
    n_specs,
    outputs,
    out,
    refs,
):
    """:func:`update` for rows ``start..`` of a batch (row r: ``slots[r]``, ``fresh[r]``,
    ``t[r]`` … into ``out[r]``, ``refs[r]``), in order: one call for many transactions.

    Returns the number of rows applied, or the row that needs a larger pool (nothing of
    it applied): the caller grows the pool and calls again from that row.
    """
    for r in range(start, slots.shape[0]):
        status = update(
            slots[r],
            fresh[r],
            t[r],
            local_ms[r],
            amount[r],
            meta,
            bounds,
            stats,
            pool,
            pool_meta,
            specs,
            n_specs,
            outputs,
            out[r],
            refs[r],
        )
        if status == NEED_POOL:
            return r
    return slots.shape[0]


@njit(cache=True, nogil=True)
def apply_label(slot, generation, seq, value, meta, bounds, stats, pool, specs, n_specs):
    """Record an event's fraud label; 1 if statistics changed, 0 if same, -1 if gone."""
    if meta[slot, GEN] != generation or seq < meta[slot, HEAD] or seq >= meta[slot, NEXT]:
        return -1
    i = _at(meta, slot, seq)
    delta = value - pool[P_LABEL, i]
    if delta == 0.0:
        return 0
    pool[P_LABEL, i] = value
    kind = meta[slot, KIND]
    for spec in range(n_specs[kind]):
        if (
            specs[kind, spec, SPEC_LABELS] != 0
            and bounds[slot, spec, LO] <= seq < bounds[slot, spec, HI]
        ):
            stats[slot, spec, FRAUD] += delta
    return 1


@njit(cache=True, nogil=True)
def _tight_ring(count):
    """Smallest ring holding ``count`` events plus the next one."""
    cap = INITIAL_RING
    while cap < count + 1:
        cap *= 2
    return cap


@njit(cache=True, nogil=True)
def compacted_size(meta, live):
    total = 0
    for slot in live:
        total += _tight_ring(meta[slot, NEXT] - meta[slot, HEAD])
    return total


@njit(cache=True, nogil=True)
def compact(meta, live, pool, new_pool):
    """Copy the live slots' rings, tightly sized, into ``new_pool``; returns its used length.

    Rings abandoned by growth or by expired entities are left behind.
    """
    used = 0
    for slot in live:
        cap = _tight_ring(meta[slot, NEXT] - meta[slot, HEAD])
        old_cap = meta[slot, CAP]
        for seq in range(meta[slot, HEAD], meta[slot, NEXT]):
            src = meta[slot, START] + (seq & (old_cap - 1))
            dst = used + (seq & (cap - 1))
            for field in range(pool.shape[0]):
                new_pool[field, dst] = pool[field, src]
        meta[slot, START] = used
        meta[slot, CAP] = cap
        used += cap
    return used
