"""The ``redis`` feature-state backend against a real redis-server and a real 3-primary
Redis Cluster (each test runs on both): the same values as the in-process engine,
refusals of re-delivered payments, labels, keys Cluster can route."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from features.data import TransactionFrame, frame_from_pandas
from features.offline import compute_features
from features.online import OnlineFeatureEngine
from features.rebuild import rebuild_state
from features.redis_cluster_state import open_redis_state
from features.redis_keys import KeyNames, plan_digest
from features.redis_state import RedisFeatureState
from features.simulator import SimulationConfig, simulate
from features.state import DuplicateTransaction, FeatureStateUnavailable, LabelOutcome
from tests.redis_cluster import RedisTarget
from tests.redis_server import free_port, start_redis, stop_redis

DAY = 86_400_000


@pytest.fixture
def target(redis_target: RedisTarget) -> RedisTarget:
    """One server or a cluster, emptied."""
    redis_target.flush(1)
    return redis_target


@pytest.fixture
def client(target: RedisTarget) -> Iterator[redis.Redis | RedisCluster]:
    """A client of the same database, to look at what the backend wrote."""
    with target.client(1) as client:
        yield client


@pytest.fixture
def state(target: RedisTarget) -> Iterator[RedisFeatureState]:
    backend = open_redis_state(target.url(1))
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def history() -> TransactionFrame:
    return frame_from_pandas(
        simulate(SimulationConfig(customers=80, terminals=150, days=45, seed=11)), "simulated"
    )


def test_same_features_as_the_memory_engine_to_the_last_bit(
    state: RedisFeatureState, history: TransactionFrame
) -> None:
    memory = rebuild_state(history, OnlineFeatureEngine())
    stored = rebuild_state(history, state)  # labels fed 7 days after their payment
    np.testing.assert_array_equal(stored, memory)
    # ...and so the offline engine's, as the memory engine is held to (1e-9 relative).
    offline = compute_features(history)
    assert np.max(np.abs(stored - offline) / np.maximum(1.0, np.abs(offline))) <= 1e-9
    # Meaningful only if labels reached the delayed windows.
    risk = list(state.feature_names).index("TERMINAL_ID_RISK_30DAY_WINDOW")
    assert (stored[:, risk] > 0).sum() > 100


def test_a_batch_equals_the_same_payments_one_by_one(
    state: RedisFeatureState, history: TransactionFrame
) -> None:
    rows = history.take(slice(0, 400))
    one_by_one = rebuild_state(rows, OnlineFeatureEngine(), label_delay=None)
    update = state.update_many(*zip(*rows.iter_rows(), strict=True))
    assert update.refused == []
    np.testing.assert_array_equal(update.values, one_by_one)


def test_a_redelivered_payment_changes_nothing(state: RedisFeatureState) -> None:
    t = 100 * DAY
    state.update_raw("tx-1", "c", "t", t, t, 10.0)
    update = state.update_many(
        ["tx-1", "tx-2"], ["c", "c"], ["t", "t"], [t + 1, t + 2], [t + 1, t + 2], [10.0, 30.0]
    )
    assert update.refused == [0]
    assert np.isnan(update.values[0]).all()
    memory = OnlineFeatureEngine()
    memory.update_raw("tx-1", "c", "t", t, t, 10.0)
    np.testing.assert_array_equal(
        update.values[1], memory.update_raw("tx-2", "c", "t", t + 2, t + 2, 30.0)
    )
    with pytest.raises(DuplicateTransaction):
        state.update_raw("tx-2", "c", "t", t + 3, t + 3, 30.0)


def test_a_redelivery_with_its_digest_gets_its_first_features_and_changes_nothing(
    state: RedisFeatureState, history: TransactionFrame
) -> None:
    rows = history.take(slice(0, 300))
    args = tuple(zip(*rows.iter_rows(), strict=True))
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    first = state.update_many(*args, digests=digests)
    assert first.refused == [] and first.replayed == []
    # Labels move the terminals' fraud counts after the payments were applied...
    for tid in rows.transaction_id.tolist()[::7]:
        state.record_label(tid, True)
    # ...yet each payment sent again gets the features it was first given, bit for bit.
    again = state.update_many(*args, digests=digests)
    assert again.refused == [] and again.replayed == list(range(300))
    np.testing.assert_array_equal(again.values, first.values)
    # A payment after them sees the state as if nothing had been sent twice.
    later = max(rows.epoch_ms.tolist()) + 1
    customer, terminal = rows.customer_id.tolist()[0], rows.terminal_id.tolist()[0]
    once = OnlineFeatureEngine()
    rebuild_state(rows, once, label_delay=None)
    for tid in rows.transaction_id.tolist()[::7]:
        once.record_label(tid, True)
    np.testing.assert_array_equal(
        state.update_raw("next", customer, terminal, later, later, 12.5),
        once.update_raw("next", customer, terminal, later, later, 12.5),
    )
    # Another payload under an applied id, or none named, is refused.
    other = state.update_many(*(a[:2] for a in args), digests=digests[2:4])
    assert other.refused == [0, 1] and other.replayed == []
    assert state.update_many(*(a[:1] for a in args)).refused == [0]


def test_ids_applied_by_an_older_version_still_take_labels_and_refuse_repeats(
    state: RedisFeatureState, client: redis.Redis | RedisCluster
) -> None:
    digest = hashlib.sha256(b"payment").hexdigest()
    state.update_many(["tx-1"], ["c"], ["t"], [DAY], [DAY], [10.0], digests=[digest])
    keys = [k for k in client.scan_iter(state.keys.pattern) if b"{x:" not in k]
    for key in keys:  # as an older version wrote it: the event's seq alone, as text
        client.hset(key, "itx-1", "0")
    assert state.record_label("tx-1", True) is LabelOutcome.APPLIED
    again = state.update_many(["tx-1"], ["c"], ["t"], [DAY], [DAY], [10.0], digests=[digest])
    assert again.refused == [0] and again.replayed == []


def test_label_outcomes_follow_the_memory_engine(state: RedisFeatureState) -> None:
    memory = OnlineFeatureEngine()
    outcomes = []
    for backend in (memory, state):
        backend.update_raw("tx-1", "c", "t", DAY, DAY, 10.0)
        outcomes.append(
            [
                backend.record_label("tx-1", True),
                backend.record_label("tx-1", True),
                backend.record_label("tx-1", False),
                backend.record_label("never-seen", True),
            ]
        )
        # The label shows in the terminal's delayed windows once they reach the payment.
        later = backend.update_raw("tx-2", "c2", "t", 9 * DAY, 9 * DAY, 5.0)
        outcomes.append(later.tolist())
    assert outcomes[0] == outcomes[2]
    assert outcomes[0] == [
        LabelOutcome.APPLIED,
        LabelOutcome.UNCHANGED,
        LabelOutcome.APPLIED,
        LabelOutcome.UNKNOWN,
    ]
    assert outcomes[1] == outcomes[3]


def test_every_key_carries_one_entity_hash_tag(
    state: RedisFeatureState, client: redis.Redis | RedisCluster
) -> None:
    state.update_raw("tx-1", "c-42", "t-9", DAY, DAY, 10.0)
    keys = sorted(k.decode() for k in client.scan_iter(KeyNames(plan_digest(state.plan)).pattern))
    prefix = f"rs:{plan_digest(state.plan)}:"
    assert keys == [
        prefix + "{c:c-42}",
        prefix + "{c:c-42}:t:t-9",
        prefix + "{t:t-9}",
        prefix + "{x:tx-1}",
    ]
    # One call per hash tag: the customer's two keys share a Cluster slot.
    slot = redis.crc.key_slot
    assert slot(keys[0].encode()) == slot(keys[1].encode())


def test_functions_lost_by_the_server_are_loaded_again(
    state: RedisFeatureState, client: redis.Redis | RedisCluster
) -> None:
    # On a cluster, FUNCTION FLUSH empties every primary.
    state.update_raw("tx-1", "c", "t", DAY, DAY, 10.0)
    client.function_flush()
    x = state.update_raw("tx-2", "c", "t", DAY + 1, DAY + 1, 20.0)
    assert x[list(state.feature_names).index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 2.0


def test_an_unreachable_server_is_one_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(FeatureStateUnavailable, match=r"feature state at redis://127\.0\.0\.1"):
        RedisFeatureState(url, timeout_s=1.0)


def test_retries_older_than_any_entity_remembers_go_to_the_store_first(
    state: RedisFeatureState,
) -> None:
    state.update_raw("tx-1", "c", "t", 40 * DAY, 40 * DAY, 10.0)
    # The customer keeps ids for 30 days, the terminal for 37: the floor is the shorter.
    assert state.dedupe_floor_ms == 10 * DAY
    assert not state.seen("tx-1")  # never asked over the network: the update refuses


def test_a_server_that_stops_answering_is_named(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_redis(tmp_path_factory.mktemp("redis-stopped"))
    state = RedisFeatureState(server.url())
    try:
        assert state.problem() is None
        state.update_raw("tx-1", "c", "t", DAY, DAY, 10.0)
        stop_redis(server)
        assert "does not answer" in (state.problem() or "")
        with pytest.raises(FeatureStateUnavailable, match="feature state at redis://"):
            state.update_raw("tx-2", "c", "t", DAY + 1, DAY + 1, 10.0)
    finally:
        state.close()
