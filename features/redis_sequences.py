"""The ``redis`` sequence store: each customer's recent payments in Redis, beside the
customer's feature state.

One capped list per customer under the customer's hash tag (``{c:<id>}:seq``), appended
by the Redis Function ``rs_seq_append_2`` (``redis_sequences.lua``) on the feature state's
own connection. A position is the payment's event time, amount and feature vector as raw
little-endian doubles (every bit kept) and its transaction id; an id the list already
holds is not appended again. A batch is one pipelined round trip, after the feature
state's: a position carries the payment's features, and those are computed here from
the feature state's reply, so they cannot travel in the same write.

The list expires after the sequence's max age of wall time without a payment, as the
in-process store forgets customers idle that long.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from features.redis_state import RedisFeatureState
from features.sequence import SequenceSpec, SequenceStore, SequenceView, view_of
from features.state import FeatureStateUnavailable

# Event time (int64), amount (double), then the features; the transaction id follows.
_TIME_AMOUNT_BYTES = 16


class RedisSequences(SequenceStore):
    """The customers' sequences in the Redis database of a :class:`RedisFeatureState`."""

    persistent = True

    def __init__(self, state: RedisFeatureState, spec: SequenceSpec) -> None:
        self.spec = spec
        self._state = state
        self._keys = state.keys
        self._prefix = _TIME_AMOUNT_BYTES + 8 * len(spec.feature_names)
        self._constant = [
            str(spec.length).encode(),
            str(spec.max_age_ms).encode(),
            str(self._prefix).encode(),
        ]

    def _item(self, epoch_ms: int, amount: float, features: np.ndarray, tid: bytes) -> bytes:
        head = np.array([epoch_ms], dtype="<i8").tobytes() + np.array([amount], "<f8").tobytes()
        return head + np.ascontiguousarray(features, dtype="<f8").tobytes() + tid

    def append_many(
        self,
        customer_ids: Sequence[Hashable],
        transaction_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        amounts: Sequence[float],
        features: np.ndarray,
        wanted: Sequence[bool],
    ) -> list[SequenceView | None]:
        n = len(customer_ids)
        if n == 0:
            return []
        if features.shape != (n, len(self.spec.feature_names)):
            raise ValueError(f"features of shape {features.shape} do not fit the sequences")
        commands: list[tuple[bytes, ...]] = []
        for i in range(n):
            tid = str(transaction_ids[i]).encode()
            commands.append(
                (
                    b"FCALL",
                    b"rs_seq_append_2",
                    b"1",
                    self._keys.customer_sequence(customer_ids[i]),
                    tid,
                    self._item(int(epoch_ms[i]), float(amounts[i]), features[i], tid),
                    *self._constant,
                    b"1" if wanted[i] else b"0",
                )
            )
        replies = self._state.run_commands(commands)
        return [self._view(replies[i], int(epoch_ms[i])) if wanted[i] else None for i in range(n)]

    def view(self, customer_id: Hashable, current_ms: int) -> SequenceView:
        key = self._keys.customer_sequence(customer_id)
        (items,) = self._state.run_commands([(b"LRANGE", key, b"0", b"-1")])
        return self._view(items, current_ms)

    def _view(self, items: Any, current_ms: int) -> SequenceView:
        """The view of a customer's list (oldest first) at ``current_ms``."""
        if not isinstance(items, list) or any(len(item) < self._prefix for item in items):
            raise FeatureStateUnavailable("feature state: a sequence does not fit the spec")
        prefix, k = self._prefix, len(self.spec.feature_names)
        packed = b"".join(item[:prefix] for item in items)
        rows = np.frombuffer(packed, dtype=np.uint8).reshape(len(items), prefix)
        times = rows[:, :8].copy().view("<i8").reshape(-1).astype(np.int64)
        amounts = rows[:, 8:16].copy().view("<f8").reshape(-1).astype(np.float64)
        values = rows[:, 16:].copy().view("<f8").reshape(len(items), k).astype(np.float64)
        ids: list[Hashable] = [item[prefix:].decode() for item in items]
        return view_of(self.spec, current_ms, values, times, ids, amounts)
