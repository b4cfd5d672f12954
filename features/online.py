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
from collections.abc import Hashable
from enum import StrEnum

import numpy as np

from features import window_kernels as k
from features.aggregations import AGGREGATION_CODES
from features.definitions import DEFAULT_FEATURES, Entity, FeatureDefinition
from features.plan import FeaturePlan, compile_plan
from features.schema import Transaction

# Sweep idle entities every this many updates: rare enough to cost nothing per update.
_SWEEP_EVERY = 4096
_INITIAL_SLOTS = 1024
_INITIAL_POOL = 1 << 16


class LabelOutcome(StrEnum):
    APPLIED = "applied"  # the label changed feature state
    UNCHANGED = "unchanged"  # the same label was already recorded
    UNKNOWN = "unknown"  # no such transaction in the state (never seen, or too old to matter)


# apply_label's best result over an event's entities -> outcome.
_LABEL_OUTCOMES = {1: LabelOutcome.APPLIED, 0: LabelOutcome.UNCHANGED, -1: LabelOutcome.UNKNOWN}


class DuplicateTransaction(ValueError):
    """The transaction id was already applied to the state.

    Detected while the id can still be labelled (the longest labelled window plus its
    delay); exactly-once over any span is the audit store's job, keyed by id.
    """


class OnlineFeatureEngine:
    """Computes the plan's features for each new transaction and absorbs label feedback."""

    def __init__(self, definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES) -> None:
        self.plan: FeaturePlan = compile_plan(definitions)
        self.feature_names = self.plan.names
        self._kinds = self.plan.entities()
        self._ids: list[OrderedDict[Hashable, int]] = [OrderedDict() for _ in self._kinds]
        self._horizons = [self.plan.horizon_ms(e) for e in self._kinds]
        self._specs, self._n_specs, self._label_kinds = self._spec_tables()
        self._outputs = self._output_table()
        max_specs = self._specs.shape[1]
        self._meta = np.zeros((_INITIAL_SLOTS, k.META_FIELDS), dtype=np.int64)
        self._bounds = np.zeros((_INITIAL_SLOTS, max_specs, 2), dtype=np.int64)
        self._stats = np.zeros((_INITIAL_SLOTS, max_specs, 4), dtype=np.float64)
        self._pool = np.zeros((3, _INITIAL_POOL), dtype=np.float64)
        self._pool_meta = np.zeros(2, dtype=np.int64)
        self._free_slots: list[int] = list(range(_INITIAL_SLOTS - 1, -1, -1))
        self._n_features = len(self.feature_names)
        # The default plan uses every kind: its keys are built without a lookup table.
        self._all_kinds = self._kinds == (
            Entity.CUSTOMER,
            Entity.TERMINAL,
            Entity.CUSTOMER_TERMINAL,
        )
        self._fresh = np.zeros(len(self._kinds), dtype=np.int64)
        self._refs = np.zeros((len(self._kinds), 2), dtype=np.int64)
        self._label_horizon_ms = max((self._horizons[i] for i in self._label_kinds), default=0)
        # transaction id -> ((slot, generation, seq) per labelled kind); expires with time.
        self._label_index: dict[Hashable, tuple[tuple[int, int, int], ...]] = {}
        # Ordered by event time, not arrival: one late-arriving old event must not hold
        # back the expiry of everything behind it.
        self._label_expiry: list[tuple[int, int, Hashable]] = []
        self._watermark = k.NEVER
        self._updates = 0

    def _spec_tables(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        max_specs = max(len(self.plan.specs[e]) for e in self._kinds) if self._kinds else 1
        specs = np.zeros((max(len(self._kinds), 1), max_specs, 3), dtype=np.int64)
        n_specs = np.zeros(max(len(self._kinds), 1), dtype=np.int64)
        label_kinds = []
        for kind, entity in enumerate(self._kinds):
            entity_specs = self.plan.specs[entity]
            n_specs[kind] = len(entity_specs)
            for index, spec in enumerate(entity_specs):
                specs[kind, index] = (spec.window_ms, spec.delay_ms, int(spec.uses_labels))
            if any(spec.uses_labels for spec in entity_specs):
                label_kinds.append(kind)
        return specs, n_specs, label_kinds

    def _output_table(self) -> np.ndarray:
        rows = []
        for column, slot in enumerate(self.plan.slots):
            d = slot.definition
            kind = -1 if d.entity is Entity.TRANSACTION else self._kinds.index(d.entity)
            rows.append((column, kind, slot.spec, AGGREGATION_CODES[d.aggregation], d.window_ms))
        return np.array(rows, dtype=np.int64).reshape(-1, 5)

    # ----------------------------------------------------------------- updates

    def update(self, tx: Transaction, out: np.ndarray | None = None) -> np.ndarray:
        """Apply a validated transaction and return its feature vector (in ``out`` if given)."""
        return self.update_raw(
            tx.transaction_id,
            tx.customer_id,
            tx.terminal_id,
            tx.epoch_ms,
            tx.local_epoch_ms,
            tx.amount,
            out=out,
        )

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
        if transaction_id in self._label_index:
            raise DuplicateTransaction(f"transaction {transaction_id!r} was already applied")
        if out is None:
            out = np.empty(self._n_features, dtype=np.float64)
        slot_list = []
        added: list[tuple[int, Hashable]] = []
        for kind, key in enumerate(self._keys(customer_id, terminal_id)):
            ids = self._ids[kind]
            slot = ids.get(key)
            if slot is None:
                slot = self._new_slot(kind, key)
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
        return out

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
        if not self._free_slots:
            self._grow_slots()
        slot = self._free_slots.pop()
        self._fresh[kind] = 1  # the kernel resets the slot for its new entity
        ids[key] = slot
        return slot

    def _grow_slots(self) -> None:
        old = len(self._meta)
        self._meta = np.concatenate([self._meta, np.zeros_like(self._meta)])
        self._bounds = np.concatenate([self._bounds, np.zeros_like(self._bounds)])
        self._stats = np.concatenate([self._stats, np.zeros_like(self._stats)])
        self._free_slots.extend(range(2 * old - 1, old - 1, -1))

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
