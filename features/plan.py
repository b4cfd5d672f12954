"""Compiles the feature list into the windows both engines maintain.

Several features share one window (count and mean over a customer's 7 days), so each
engine keeps one set of running statistics per distinct (entity, window, delay) and
derives every feature from it. Both engines read this plan; neither re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.aggregations import AGGREGATION_CODES
from features.definitions import DEFAULT_FEATURES, Entity, FeatureDefinition, by_name

HISTORY_ENTITIES = (Entity.CUSTOMER, Entity.TERMINAL, Entity.CUSTOMER_TERMINAL)


@dataclass(frozen=True)
class WindowSpec:
    """Running statistics over one entity's events in a (possibly delayed) time window."""

    window_ms: int
    delay_ms: int
    uses_labels: bool

    @property
    def horizon_ms(self) -> int:
        """How far back an event can still matter to this window."""
        return self.window_ms + self.delay_ms


@dataclass(frozen=True)
class FeatureSlot:
    """Where one feature's value comes from: its entity's window number ``spec``."""

    definition: FeatureDefinition
    spec: int  # index into FeaturePlan.specs[entity]; -1 for transaction-level features


@dataclass(frozen=True)
class FeaturePlan:
    definitions: tuple[FeatureDefinition, ...]
    specs: dict[Entity, tuple[WindowSpec, ...]]
    slots: tuple[FeatureSlot, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.definitions)

    def horizon_ms(self, entity: Entity) -> int:
        return max((s.horizon_ms for s in self.specs.get(entity, ())), default=0)

    @property
    def longest_horizon_ms(self) -> int:
        """How far back any event can still matter to any window (warm starts replay this)."""
        return max((self.horizon_ms(e) for e in HISTORY_ENTITIES), default=0)

    def entities(self) -> tuple[Entity, ...]:
        return tuple(e for e in HISTORY_ENTITIES if self.specs.get(e))


def compile_plan(definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES) -> FeaturePlan:
    by_name(definitions)  # rejects duplicate names
    keys: dict[Entity, list[tuple[int, int]]] = {e: [] for e in HISTORY_ENTITIES}
    labelled: dict[tuple[Entity, int, int], bool] = {}
    slots: list[FeatureSlot] = []
    for d in definitions:
        if d.entity is Entity.TRANSACTION:
            slots.append(FeatureSlot(d, -1))
            continue
        key = (d.window_ms, d.delay_ms)
        if key not in keys[d.entity]:
            keys[d.entity].append(key)
        labelled[(d.entity, *key)] = labelled.get((d.entity, *key), False) or d.uses_labels
        slots.append(FeatureSlot(d, keys[d.entity].index(key)))
    specs = {
        entity: tuple(WindowSpec(w, dl, labelled[(entity, w, dl)]) for w, dl in pairs)
        for entity, pairs in keys.items()
        if pairs
    }
    return FeaturePlan(definitions=definitions, specs=specs, slots=tuple(slots))


def spec_table(
    plan: FeaturePlan, kinds: tuple[Entity, ...]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Each kind's windows as rows of (window ms, delay ms, uses labels), padded to the
    kind with most; how many each kind has; the kinds with a labelled window."""
    max_specs = max(len(plan.specs[e]) for e in kinds) if kinds else 1
    specs = np.zeros((max(len(kinds), 1), max_specs, 3), dtype=np.int64)
    n_specs = np.zeros(max(len(kinds), 1), dtype=np.int64)
    label_kinds = []
    for kind, entity in enumerate(kinds):
        entity_specs = plan.specs[entity]
        n_specs[kind] = len(entity_specs)
        for index, spec in enumerate(entity_specs):
            specs[kind, index] = (spec.window_ms, spec.delay_ms, int(spec.uses_labels))
        if any(spec.uses_labels for spec in entity_specs):
            label_kinds.append(kind)
    return specs, n_specs, label_kinds


def output_table(plan: FeaturePlan, kinds: tuple[Entity, ...]) -> np.ndarray:
    """One row per feature: (column, kind or -1 for the payment itself, window number,
    aggregation code, window ms) — what the kernels read to fill a feature vector."""
    rows = []
    for column, slot in enumerate(plan.slots):
        d = slot.definition
        kind = -1 if d.entity is Entity.TRANSACTION else kinds.index(d.entity)
        rows.append((column, kind, slot.spec, AGGREGATION_CODES[d.aggregation], d.window_ms))
    return np.array(rows, dtype=np.int64).reshape(-1, 5)
