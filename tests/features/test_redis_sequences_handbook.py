"""The redis sequence store on the handbook: the 21-day slice of the sequence parity
test gives the memory store's sequences, to the last bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.data import load_transactions
from features.definitions import DEFAULT_FEATURES
from features.rebuild import rebuild_state
from features.redis_cluster_state import open_redis_state
from features.redis_sequences import RedisSequences
from features.sequence import OnlineSequences, SequenceSpec
from tests.features.test_redis_sequences import assert_same, replay
from tests.redis_cluster import RedisTarget

pytestmark = [pytest.mark.handbook, pytest.mark.slow]


def test_redis_sequences_equal_memory_sequences_on_a_handbook_slice(
    handbook_dir: Path, redis_target: RedisTarget
) -> None:
    history = load_transactions(handbook_dir / "transactions_dev.csv.gz")
    days = history.day
    history = history.take(days < days.min() + np.timedelta64(21, "D"))
    features = rebuild_state(history)  # the memory backend's vectors, labels fed as known
    spec = SequenceSpec(length=32, feature_names=tuple(d.name for d in DEFAULT_FEATURES))
    # Every 7th payment's view (all of them would move ~1.5 GB through the socket), then
    # every customer's sequence at the end.
    wanted = np.arange(len(history)) % 7 == 0
    redis_target.flush(6)
    state = open_redis_state(redis_target.url(6))
    try:
        stored_store = RedisSequences(state, spec)
        memory_store = OnlineSequences(spec)
        stored = replay(stored_store, history, features, wanted, batch=512)
        memory = replay(memory_store, history, features, wanted, batch=512)
        assert len(stored) > 25_000
        assert_same(stored, memory)
        end = int(history.epoch_ms.max())
        for customer in np.unique(history.customer_id).tolist():
            a, b = stored_store.view(customer, end), memory_store.view(customer, end)
            np.testing.assert_array_equal(a.values, b.values)
            assert [str(t) for t in a.transaction_ids] == [str(t) for t in b.transaction_ids]
    finally:
        state.close()
