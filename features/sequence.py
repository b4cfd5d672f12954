"""A customer's recent transactions as a sequence, for the second-stage model.

Each position of a sequence is one of the customer's transactions, oldest first and the
current one last: its feature vector exactly as the fast path computed it at that
instant (amount, calendar, customer and terminal windows, terminal risk known so far),
then how long before the current transaction it happened, then a 1 marking a real
transaction (0 for the padding of a short history). The feature vectors are those of the
feature plan, so the sequence adds no definitions of its own: serving (a ring buffer per
customer, :class:`OnlineSequences`) and training (:func:`sequence_index` +
:func:`assemble`) build the same arrays from the same numbers.

A position is a customer's earlier payment no older than ``max_age_ms`` (by default the
feature plan's longest horizon: what a warm start can rebuild), at or before the current
payment's time, in time order (ties in arrival order). Both engines apply that rule, so
when state is dropped (idle customers, restarts) does not change any sequence. For
payments that arrive in time order the two engines agree exactly; a late payment sees the
earlier payments still in its customer's ring.

>>> spec = SequenceSpec(length=3, feature_names=("TX_AMOUNT",), max_age_ms=10_000)
>>> online = OnlineSequences(spec)
>>> for i, t in enumerate((1_000, 4_000)):
...     online.append("c", f"t{i}", t, 10.0 * (i + 1), np.array([10.0 * (i + 1)]))
>>> online.sequence("c", 4_000).tolist()
[[0.0, 0.0, 0.0], [10.0, 3.0, 1.0], [20.0, 0.0, 1.0]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from features.data import TransactionFrame
from features.plan import compile_plan

DEFAULT_SEQUENCE_LENGTH = 32
# Older payments are not in a sequence: warm starts replay no further back than this.
DEFAULT_MAX_AGE_MS = compile_plan().longest_horizon_ms
# Columns after the feature vector at every position.
EXTRA_COLUMNS = ("SECONDS_BEFORE_CURRENT", "IS_TRANSACTION")


@dataclass(frozen=True)
class SequenceSpec:
    """How long sequences are and which feature vector each position carries."""

    length: int
    feature_names: tuple[str, ...]
    max_age_ms: int = DEFAULT_MAX_AGE_MS

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"sequence length must be at least 1, got {self.length}")
        if self.max_age_ms < 1:
            raise ValueError(f"max_age_ms must be positive, got {self.max_age_ms}")

    @property
    def width(self) -> int:
        """Numbers per position: the features, the time gap, the padding flag."""
        return len(self.feature_names) + len(EXTRA_COLUMNS)

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.feature_names + EXTRA_COLUMNS


def _fill_position(
    out: np.ndarray, features: np.ndarray, epoch_ms: np.ndarray, current_ms: np.ndarray | int
) -> None:
    """Write real positions: features, seconds before the current payment, flag 1.

    One function for both engines, so their arithmetic cannot drift apart.
    """
    n = features.shape[-1]
    out[..., :n] = features
    out[..., n] = np.maximum(current_ms - epoch_ms, 0) / 1000.0
    out[..., n + 1] = 1.0


def fill_positions(
    values: np.ndarray, features: np.ndarray, epoch_ms: np.ndarray, current_ms: int
) -> None:
    """Fill the last ``len(features)`` positions of a ``(length, width)`` sequence with
    payments in time order (the current one last); the positions before stay padding."""
    n = len(features)
    _fill_position(values[values.shape[0] - n :], features, epoch_ms, current_ms)


def sequence_index(
    history: TransactionFrame, length: int, max_age_ms: int = DEFAULT_MAX_AGE_MS
) -> np.ndarray:
    """Per row, the rows of its sequence (oldest first, itself last; -1 pads).

    A customer's transactions are ordered by time, then by file order — the order in
    which a time-ordered replay reaches the online engine. Payments ``max_age_ms`` or more
    before the row's own are left out.
    """
    codes = np.unique(history.customer_id, return_inverse=True)[1].astype(np.int64)
    times = history.epoch_ms.astype(np.int64)
    order = np.lexsort((np.arange(len(times)), times, codes))
    sorted_codes = codes[order]
    position = np.arange(len(order), dtype=np.int64)
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    segment_start = np.maximum.accumulate(np.where(first, position, 0))
    back = position[:, None] - np.arange(length - 1, -1, -1, dtype=np.int64)[None, :]
    sorted_times = times[order]
    valid = (back >= segment_start[:, None]) & (
        sorted_times[np.maximum(back, 0)] > sorted_times[:, None] - max_age_ms
    )
    # Too-old positions are the oldest ones: padding stays contiguous at the front.
    index = np.where(valid, order[np.maximum(back, 0)], -1)
    out = np.empty_like(index)
    out[order] = index
    return out


def assemble(
    features: np.ndarray, epoch_ms: np.ndarray, index: np.ndarray, dtype: type = np.float32
) -> np.ndarray:
    """Sequences (rows, length, width) for rows of ``sequence_index`` (offline).

    ``features`` and ``epoch_ms`` cover the whole history the index points into.
    """
    rows, length = index.shape
    out = np.zeros((rows, length, features.shape[1] + len(EXTRA_COLUMNS)), dtype=dtype)
    valid = index >= 0
    safe = np.where(valid, index, 0)
    current_ms = epoch_ms[index[:, -1]].astype(np.int64)
    filled = np.zeros_like(out)
    _fill_position(
        filled,
        features[safe],
        epoch_ms[safe].astype(np.int64),
        np.broadcast_to(current_ms[:, None], index.shape),
    )
    out[valid] = filled[valid]
    return out


class _Ring:
    """One customer's last ``length`` transactions."""

    __slots__ = ("amounts", "count", "epoch_ms", "features", "ids", "last_ms")

    def __init__(self, length: int, n_features: int) -> None:
        self.features = np.zeros((length, n_features), dtype=np.float64)
        self.epoch_ms = np.zeros(length, dtype=np.int64)
        self.ids: list[Hashable] = [None] * length
        self.amounts = np.zeros(length, dtype=np.float64)
        self.count = 0  # transactions ever appended; the newest is at (count - 1) % length
        self.last_ms = 0


@dataclass(frozen=True)
class SequenceView:
    """A sequence as the model takes it, and which transactions it holds."""

    values: np.ndarray  # (length, width)
    transaction_ids: list[Hashable]  # oldest first, the current transaction last
    epoch_ms: list[int]
    amounts: list[float]


_EMPTY_TIMES = np.zeros(0, dtype=np.int64)


def view_of(
    spec: SequenceSpec,
    current_ms: int,
    features: np.ndarray,
    epoch_ms: np.ndarray,
    transaction_ids: list[Hashable],
    amounts: np.ndarray,
) -> SequenceView:
    """The sequence at ``current_ms`` from a customer's kept payments in arrival order
    (oldest first): those inside the max age and not after ``current_ms``, in time
    order, ties in arrival order. One function for every sequence store."""
    values = np.zeros((spec.length, spec.width), dtype=np.float64)
    keep = (epoch_ms > current_ms - spec.max_age_ms) & (epoch_ms <= current_ms)
    # Time order, ties in arrival order (a stable sort of the arrival order).
    slots = np.flatnonzero(keep)[np.argsort(epoch_ms[keep], kind="stable")]
    if len(slots) == 0:
        return SequenceView(values, [], [], [])
    fill_positions(values, features[slots], epoch_ms[slots], current_ms)
    return SequenceView(
        values,
        [transaction_ids[s] for s in slots.tolist()],
        epoch_ms[slots].tolist(),
        amounts[slots].tolist(),
    )


class SequenceStore(ABC):
    """Where the customers' sequences live: ``memory`` (:class:`OnlineSequences`, in the
    process, refilled from the audit store at start-up) or ``redis``
    (:class:`features.redis_sequences.RedisSequences`, beside the feature state)."""

    spec: SequenceSpec
    #: Whether the sequences outlive the process (then nothing is refilled at start-up).
    persistent: bool = False

    @abstractmethod
    def append_many(
        self,
        customer_ids: Sequence[Hashable],
        transaction_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        amounts: Sequence[float],
        features: np.ndarray,
        wanted: Sequence[bool],
    ) -> list[SequenceView | None]:
        """Append payments the feature state has just applied, in order; for each payment
        ``wanted``, the view right after its own append (before a later payment of the
        same customer in the batch joins). A store shared by processes also skips an id
        its customer's sequence already holds (a retry racing the original)."""

    @abstractmethod
    def view(self, customer_id: Hashable, current_ms: int) -> SequenceView:
        """The customer's sequence as the second stage would see it at ``current_ms``."""

    def sequence(self, customer_id: Hashable, current_ms: int) -> np.ndarray:
        """The customer's sequence ending with their latest transaction."""
        return self.view(customer_id, current_ms).values


class OnlineSequences(SequenceStore):
    """Each customer's recent transactions, kept as the fast path saw them (serving).

    Memory is bounded: customers idle for longer than ``spec.max_age_ms`` are dropped
    (none of their payments could be in a sequence any more), and each keeps at most
    ``length``.
    """

    def __init__(self, spec: SequenceSpec) -> None:
        self.spec = spec
        self._horizon_ms = spec.max_age_ms
        self._rings: OrderedDict[Hashable, _Ring] = OrderedDict()
        self._appends = 0

    def __len__(self) -> int:
        return len(self._rings)

    def append(
        self,
        customer_id: Hashable,
        transaction_id: Hashable,
        epoch_ms: int,
        amount: float,
        features: np.ndarray,
    ) -> None:
        """Record a transaction the feature engine has just applied."""
        ring = self._rings.get(customer_id)
        if ring is None:
            ring = self._rings[customer_id] = _Ring(self.spec.length, len(self.spec.feature_names))
        else:
            self._rings.move_to_end(customer_id)
        slot = ring.count % self.spec.length
        ring.features[slot] = features
        ring.epoch_ms[slot] = epoch_ms
        ring.ids[slot] = transaction_id
        ring.amounts[slot] = amount
        ring.count += 1
        ring.last_ms = max(ring.last_ms, epoch_ms)
        self._appends += 1
        if self._appends % 4096 == 0:
            self.expire(ring.last_ms)

    def append_many(
        self,
        customer_ids: Sequence[Hashable],
        transaction_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        amounts: Sequence[float],
        features: np.ndarray,
        wanted: Sequence[bool],
    ) -> list[SequenceView | None]:
        views: list[SequenceView | None] = [None] * len(customer_ids)
        for i, customer in enumerate(customer_ids):
            self.append(customer, transaction_ids[i], epoch_ms[i], amounts[i], features[i])
            if wanted[i]:
                views[i] = self.view(customer, epoch_ms[i])
        return views

    def view(self, customer_id: Hashable, current_ms: int) -> SequenceView:
        """The sequence and the transactions behind it (for attributions)."""
        ring = self._rings.get(customer_id)
        if ring is None:
            return view_of(self.spec, current_ms, _EMPTY_TIMES, _EMPTY_TIMES, [], _EMPTY_TIMES)
        length = self.spec.length
        kept = min(ring.count, length)
        arrival = (ring.count - kept + np.arange(kept)) % length
        return view_of(
            self.spec,
            current_ms,
            ring.features[arrival],
            ring.epoch_ms[arrival],
            [ring.ids[s] for s in arrival.tolist()],
            ring.amounts[arrival],
        )

    def expire(self, now_ms: int) -> None:
        """Forget customers idle for longer than the horizon."""
        cutoff = now_ms - self._horizon_ms
        rings = self._rings
        while rings:
            key = next(iter(rings))
            if rings[key].last_ms > cutoff:
                break
            del rings[key]
