"""Per-entity feature state updated one transaction at a time (serving).

Each entity (customer, terminal, customer-at-terminal) keeps its recent events and, per
window of the feature plan, running statistics; a new event moves every window forward
and frees what no window can see again, so memory is bounded by the longest window plus
its delay. Entities idle for longer than that are dropped too. The bookkeeping runs in
compiled kernels (``window_kernels``); this class maps ids to slots and owns the labels.

Event time is monotone per entity: an event older than its entity's latest is counted at
the entity's latest time (a late event must not reopen windows that have moved on).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np

from features import window_kernels as k
from features.definitions import DEFAULT_FEATURES, Entity, FeatureDefinition
from features.plan import FeaturePlan, compile_plan, output_table, spec_table
from features.state import (
    BatchUpdate,
    DuplicateTransaction,
    Event,
    FeatureState,
    LabelOutcome,
)

__all__ = [
    "BatchUpdate",
    "DuplicateTransaction",
    "Event",
    "LabelOutcome",
    "OnlineFeatureEngine",
]

# Sweep idle entities every this many updates: rare enough to cost nothing per update.
_SWEEP_EVERY = 4096
# Room reserved up front, not used up front: numpy's zeros come from calloc, whose large
# blocks are pages mapped on first touch, so only the entities (and events) actually held
# cost memory. What it buys is time: growing a table means copying all of it, which
# stalled scoring for 50-300 ms each time the state doubled while filling (measured).
_RESERVED_SLOTS = 1 << 20  # entities before the first copy: ~0.5 GB of address space
_INITIAL_POOL = 1 << 22  # event cells before the first compaction: ~0.1 GB of address space


# apply_label's best result over an event's entities -> outcome.
_LABEL_OUTCOMES = {1: LabelOutcome.APPLIED, 0: LabelOutcome.UNCHANGED, -1: LabelOutcome.UNKNOWN}


class OnlineFeatureEngine(FeatureState):
    """Computes the plan's features for each new transaction and absorbs label feedback
    (the ``memory`` backend of :class:`~features.state.FeatureState`)."""

    def __init__(self, definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES) -> None:
        self.plan: FeaturePlan = compile_plan(definitions)
        self.feature_names = self.plan.names
        self._kinds = self.plan.entities()
        self._ids: list[OrderedDict[Hashable, int]] = [OrderedDict() for _ in self._kinds]
        self._horizons = [self.plan.horizon_ms(e) for e in self._kinds]
        self._specs, self._n_specs, self._label_kinds = spec_table(self.plan, self._kinds)
        self._outputs = output_table(self.plan, self._kinds)
        max_specs = self._specs.shape[1]
        self._meta = np.zeros((_RESERVED_SLOTS, k.META_FIELDS), dtype=np.int64)
        self._bounds = np.zeros((_RESERVED_SLOTS, max_specs, 2), dtype=np.int64)
        self._stats = np.zeros((_RESERVED_SLOTS, max_specs, 4), dtype=np.float64)
        self._pool = np.zeros((3, _INITIAL_POOL), dtype=np.float64)
        self._pool_meta = np.zeros(2, dtype=np.int64)
        # Slots given back by expired entities, reused first; then never-used ones in order.
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._n_features = len(self.feature_names)
        # Scratch for the single-row kernel: new-entity flags and label references per kind.
        self._fresh = np.zeros(len(self._kinds), dtype=np.int64)
        self._refs = np.zeros((len(self._kinds), 2), dtype=np.int64)
        # The default plan uses every kind: its keys are built without a lookup table.
        self._all_kinds = self._kinds == (
            Entity.CUSTOMER,
            Entity.TERMINAL,
            Entity.CUSTOMER_TERMINAL,
        )
        self._label_horizon_ms = max((self._horizons[i] for i in self._label_kinds), default=0)
        # transaction id -> ((slot, generation, seq) per labelled kind); expires with time.
        self._label_index: dict[Hashable, tuple[tuple[int, int, int], ...]] = {}
        # Ordered by event time, not arrival: one late-arriving old event must not hold
        # back the expiry of everything behind it.
        self._label_expiry: list[tuple[int, int, Hashable]] = []
        self._watermark = k.NEVER
        self._updates = 0

    # ----------------------------------------------------------------- updates

    def update_raw(
        self,
        transaction_id: Hashable,
        customer_id: Hashable,
        terminal_id: Hashable,
        epoch_ms: int,
        local_epoch_ms: int,
        amount: float,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """As ``update`` for already-checked fields; fills ``out`` when given (replays)."""
        if out is None:
            out = np.empty(self._n_features, dtype=np.float64)
        if not self._update_one(
            transaction_id, customer_id, terminal_id, epoch_ms, local_epoch_ms, amount, out
        ):
            raise DuplicateTransaction(f"transaction {transaction_id!r} was already applied")
        return out

    def _update_one(
        self,
        transaction_id: Hashable,
        customer_id: Hashable,
        terminal_id: Hashable,
        epoch_ms: int,
        local_epoch_ms: int,
        amount: float,
        out: np.ndarray,
    ) -> bool:
        """One transaction through the single-row kernel: ~3x less Python and numpy set-up
        than a batch of one (measured), for the common case of a lone payment. False for an
        id already applied (nothing changes)."""
        if transaction_id in self._label_index:
            return False
        slot_list = []
        added: list[tuple[int, Hashable]] = []
        for kind, key in enumerate(self._keys(customer_id, terminal_id)):
            ids = self._ids[kind]
            slot = ids.get(key)
            if slot is None:
                slot = self._new_slot(kind, key)
                self._fresh[kind] = 1  # the kernel resets the slot for its new entity
                added.append((kind, key))
            else:
                # Most recently used last: idle entities gather at the front for expiry.
                ids.move_to_end(key)
            slot_list.append(slot)
        try:
            self._apply(slot_list, epoch_ms, local_epoch_ms, amount, out)
        except BaseException:
            # Undo the slots handed out for this event, or the next update would reset
            # them under another entity.
            self._fresh[:] = 0
            for kind, key in added:
                self._free_slots.append(self._ids[kind].pop(key))
            raise
        if self._label_kinds:
            refs = self._refs.tolist()
            self._label_index[transaction_id] = tuple(
                (slot_list[i], refs[i][0], refs[i][1]) for i in self._label_kinds
            )
            heapq.heappush(self._label_expiry, (epoch_ms, self._updates, transaction_id))
        if epoch_ms > self._watermark:
            self._watermark = epoch_ms
        self._updates += 1
        if self._updates % _SWEEP_EVERY == 0:
            self.expire(self._watermark)
        return True

    def _apply(
        self,
        slot_list: list[int],
        epoch_ms: int,
        local_epoch_ms: int,
        amount: float,
        out: np.ndarray,
    ) -> None:
        while (
            k.update(
                tuple(slot_list),
                self._fresh,
                epoch_ms,
                local_epoch_ms,
                amount,
                self._meta,
                self._bounds,
                self._stats,
                self._pool,
                self._pool_meta,
                self._specs,
                self._n_specs,
                self._outputs,
                out,
                self._refs,
            )
            == k.NEED_POOL
        ):
            self._grow_pool()

    def update_many(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        local_epoch_ms: Sequence[int],
        amounts: Sequence[float],
        digests: Sequence[str] | None = None,
    ) -> BatchUpdate:
        """Apply transactions in the order given, with one compiled call for all of them.

        Exactly as many :meth:`update_raw` calls in a row would (each sees the ones before
        it); an id already applied — earlier, or earlier in this batch — is refused and
        changes nothing, whatever its digest: this state never replays (it dies with the
        process, and starts again from the recorded decisions). Per transaction the
        Python work is a few dictionary lookups.
        """
        del digests
        n = len(transaction_ids)
        if n == 1:
            values = np.empty((1, self._n_features), dtype=np.float64)
            applied = self._update_one(
                transaction_ids[0],
                customer_ids[0],
                terminal_ids[0],
                int(epoch_ms[0]),
                int(local_epoch_ms[0]),
                float(amounts[0]),
                values[0],
            )
            if applied:
                return BatchUpdate(values, [])
            values[:] = np.nan
            return BatchUpdate(values, [0])
        # Converted first: a value that does not fit fails here, before any state changes.
        all_t = np.asarray(epoch_ms, dtype=np.int64)
        all_local = np.asarray(local_epoch_ms, dtype=np.int64)
        all_amounts = np.asarray(amounts, dtype=np.float64)
        values = np.full((n, self._n_features), np.nan, dtype=np.float64)
        refused: list[int] = []
        start = 0
        while start < n:
            # The periodic sweep runs after the same update as one by one: a batch across it
            # is applied in two segments, the second one's entities looked up after it.
            room = _SWEEP_EVERY - self._updates % _SWEEP_EVERY
            end = self._segment_end(transaction_ids, start, n, room)
            self._apply_segment(
                transaction_ids,
                customer_ids,
                terminal_ids,
                [int(epoch_ms[i]) for i in range(start, end)],
                all_t,
                all_local,
                all_amounts,
                start,
                end,
                values,
                refused,
            )
            start = end
        return BatchUpdate(values, refused)

    def _segment_end(
        self, transaction_ids: Sequence[Hashable], start: int, n: int, room: int
    ) -> int:
        """The end of the rows from ``start`` holding at most ``room`` new (accepted) ids."""
        index = self._label_index
        seen: set[Hashable] = set()
        for i in range(start, n):
            transaction_id = transaction_ids[i]
            if transaction_id in index or transaction_id in seen:
                continue
            seen.add(transaction_id)
            if len(seen) == room:
                return i + 1
        return n

    def _apply_segment(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        times: list[int],
        all_t: np.ndarray,
        all_local: np.ndarray,
        all_amounts: np.ndarray,
        start: int,
        end: int,
        values: np.ndarray,
        refused: list[int],
    ) -> None:
        """Rows ``start..end`` of a batch: at most one sweep's worth of new ids."""
        slot_rows: list[list[int]] = []
        fresh_rows: list[list[int]] = []
        accepted: list[int] = []
        added: list[tuple[int, Hashable]] = []
        index = self._label_index
        in_batch: set[Hashable] = set()
        all_ids = self._ids
        for i in range(start, end):
            transaction_id = transaction_ids[i]
            if transaction_id in index or transaction_id in in_batch:
                refused.append(i)
                continue
            in_batch.add(transaction_id)
            accepted.append(i)
            these: list[int] = []
            fresh: list[int] = []
            for kind, key in enumerate(self._keys(customer_ids[i], terminal_ids[i])):
                ids = all_ids[kind]
                slot = ids.get(key)
                if slot is None:
                    slot = self._new_slot(kind, key)
                    added.append((kind, key))
                    fresh.append(1)  # the kernel resets the slot for its new entity
                else:
                    # Most recently used last: idle entities gather at the front for expiry.
                    ids.move_to_end(key)
                    fresh.append(0)
                these.append(slot)
            slot_rows.append(these)
            fresh_rows.append(fresh)
        m = len(accepted)
        if not m:
            return
        rows = np.asarray(accepted, dtype=np.int64)
        out = np.empty((m, self._n_features), dtype=np.float64)
        refs = np.empty((m, len(self._kinds), 2), dtype=np.int64)
        try:
            self._apply_many(
                np.array(slot_rows, dtype=np.int64),
                np.array(fresh_rows, dtype=np.int64),
                all_t[rows],
                all_local[rows],
                all_amounts[rows],
                out,
                refs,
            )
        except BaseException:
            # Give back the slots handed out for this batch, or the next update would
            # reset them under another entity.
            for kind, key in added:
                self._free_slots.append(all_ids[kind].pop(key))
            raise
        values[rows] = out
        label_kinds = self._label_kinds
        accepted_times = [times[i - start] for i in accepted]
        if label_kinds:
            ref_rows = refs.tolist()
            expiry = self._label_expiry
            updates = self._updates
            for row, i in enumerate(accepted):
                row_slots, row_refs = slot_rows[row], ref_rows[row]
                index[transaction_ids[i]] = tuple(
                    (row_slots[kind], row_refs[kind][0], row_refs[kind][1]) for kind in label_kinds
                )
                heapq.heappush(expiry, (accepted_times[row], updates + row, transaction_ids[i]))
        latest = max(accepted_times)
        if latest > self._watermark:
            self._watermark = latest
        self._updates += m
        if self._updates % _SWEEP_EVERY == 0:
            self.expire(self._watermark)

    def _apply_many(
        self,
        slots: np.ndarray,
        fresh: np.ndarray,
        t: np.ndarray,
        local: np.ndarray,
        amount: np.ndarray,
        out: np.ndarray,
        refs: np.ndarray,
    ) -> None:
        done = 0
        while True:
            done = k.update_many(
                slots,
                fresh,
                t,
                local,
                amount,
                done,
                self._meta,
                self._bounds,
                self._stats,
                self._pool,
                self._pool_meta,
                self._specs,
                self._n_specs,
                self._outputs,
                out,
                refs,
            )
            if done == len(slots):
                return
            self._grow_pool()

    def seen(self, transaction_id: Hashable) -> bool:
        """Whether this id was applied to the state (reliably so while its event time is
        after :attr:`dedupe_floor_ms`; older ids may have been forgotten)."""
        return transaction_id in self._label_index

    @property
    def dedupe_floor_ms(self) -> int:
        """Event time after which :meth:`seen` never forgets an applied id: ids are kept
        as long as a label could still reach their windows (the longest labelled window
        plus its delay, behind the latest event time)."""
        if not self._label_kinds:
            return 2**62  # nothing is remembered: no id is known for sure
        return self._watermark - self._label_horizon_ms

    def record_label(self, transaction_id: Hashable, is_fraud: bool) -> LabelOutcome:
        """Feed a fraud label back; it reaches only windows delayed past its transaction."""
        refs = self._label_index.get(transaction_id)
        if refs is None:
            return LabelOutcome.UNKNOWN
        value = 1.0 if is_fraud else 0.0
        best = -1
        for slot, generation, seq in refs:
            result = k.apply_label(
                slot,
                generation,
                seq,
                value,
                self._meta,
                self._bounds,
                self._stats,
                self._pool,
                self._specs,
                self._n_specs,
            )
            best = max(best, result)
        return _LABEL_OUTCOMES[best]

    # ------------------------------------------------------------- memory

    def _keys(self, customer_id: Hashable, terminal_id: Hashable) -> tuple[Hashable, ...]:
        if self._all_kinds:
            return customer_id, terminal_id, (customer_id, terminal_id)
        by_entity: dict[Entity, Hashable] = {
            Entity.CUSTOMER: customer_id,
            Entity.TERMINAL: terminal_id,
            Entity.CUSTOMER_TERMINAL: (customer_id, terminal_id),
        }
        return tuple(by_entity[entity] for entity in self._kinds)

    def _new_slot(self, kind: int, key: Hashable) -> int:
        ids = self._ids[kind]
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            if self._next_slot == len(self._meta):
                self._grow_slots()
            slot = self._next_slot
            self._next_slot += 1
        ids[key] = slot
        return slot

    def _grow_slots(self) -> None:
        self._meta = np.concatenate([self._meta, np.zeros_like(self._meta)])
        self._bounds = np.concatenate([self._bounds, np.zeros_like(self._bounds)])
        self._stats = np.concatenate([self._stats, np.zeros_like(self._stats)])

    def _grow_pool(self) -> None:
        # Compacting reclaims abandoned rings; twice the live size leaves room to grow, so
        # this runs O(log n) times as state builds up.
        live = self._live_slots()
        size = max(2 * int(k.compacted_size(self._meta, live)), _INITIAL_POOL)
        new_pool = np.zeros((3, size), dtype=np.float64)
        self._pool_meta[k.USED] = k.compact(self._meta, live, self._pool, new_pool)
        self._pool = new_pool

    def compile_kernels(self) -> None:
        """Compile the pool-compaction kernels now (harmless on any state): compiled lazily,
        they would cost the first payment that outgrows the pool most of a second."""
        self._grow_pool()

    def _live_slots(self) -> np.ndarray:
        return np.fromiter((slot for ids in self._ids for slot in ids.values()), dtype=np.int64)

    def expire(self, now_ms: int) -> None:
        """Forget entities and label references that no future window can use."""
        meta = self._meta
        for kind, ids in enumerate(self._ids):
            cutoff = now_ms - self._horizons[kind]
            while ids:
                key = next(iter(ids))
                slot = ids[key]
                if meta[slot, k.LAST_MS] > cutoff:
                    break
                del ids[key]
                meta[slot, k.CAP] = 0
                meta[slot, k.HEAD] = meta[slot, k.NEXT] = 0
                self._free_slots.append(slot)
        cutoff = now_ms - self._label_horizon_ms
        expiry = self._label_expiry
        while expiry and expiry[0][0] <= cutoff:
            self._label_index.pop(heapq.heappop(expiry)[2], None)

    def stats(self) -> dict[str, int]:
        """Entities, retained events and label references, for memory monitoring."""
        out: dict[str, int] = {}
        meta = self._meta
        for entity, ids in zip(self._kinds, self._ids, strict=True):
            slots = np.fromiter(ids.values(), dtype=np.int64, count=len(ids))
            out[f"{entity.value}_entities"] = len(ids)
            out[f"{entity.value}_events"] = int((meta[slots, k.NEXT] - meta[slots, k.HEAD]).sum())
        out["label_refs"] = len(self._label_index)
        out["pool_cells"] = int(self._pool.shape[1])
        return out
