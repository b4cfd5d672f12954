"""The ``redis`` sequence store against a real redis-server and a real 3-primary Redis
Cluster (each test runs on both): the same sequences as the
in-process store (to the last bit), one append per id, keys under the customer's tag."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from features.data import TransactionFrame, frame_from_pandas
from features.definitions import DEFAULT_FEATURES
from features.rebuild import rebuild_state
from features.redis_cluster_state import open_redis_state
from features.redis_sequences import RedisSequences
from features.redis_state import RedisFeatureState
from features.sequence import OnlineSequences, SequenceSpec, SequenceStore
from features.simulator import SimulationConfig, simulate
from tests.redis_cluster import RedisTarget

NAMES = tuple(d.name for d in DEFAULT_FEATURES)
DAY = 86_400_000


@pytest.fixture
def state(redis_target: RedisTarget) -> Iterator[RedisFeatureState]:
    redis_target.flush(4)
    backend = open_redis_state(redis_target.url(4))
    try:
        yield backend
    finally:
        backend.close()


def replay(
    store: SequenceStore,
    history: TransactionFrame,
    features: np.ndarray,
    wanted: np.ndarray,
    batch: int = 256,
) -> list[tuple[np.ndarray, list[str]]]:
    """Append every payment in file order, a batch per call; the views asked for."""
    views = []
    for start in range(0, len(history), batch):
        rows = slice(start, start + batch)
        got = store.append_many(
            history.customer_id[rows].tolist(),
            history.transaction_id[rows].tolist(),
            history.epoch_ms[rows].tolist(),
            history.amount[rows].tolist(),
            features[rows],
            wanted[rows].tolist(),
        )
        views += [(v.values, [str(t) for t in v.transaction_ids]) for v in got if v is not None]
    return views


def assert_same(
    stored: list[tuple[np.ndarray, list[str]]], memory: list[tuple[np.ndarray, list[str]]]
) -> None:
    assert len(stored) == len(memory)
    for (values, ids), (expected, expected_ids) in zip(stored, memory, strict=True):
        np.testing.assert_array_equal(values, expected)
        assert ids == expected_ids


def test_same_sequences_as_the_memory_store_to_the_last_bit(state: RedisFeatureState) -> None:
    history = frame_from_pandas(
        simulate(SimulationConfig(customers=60, terminals=100, days=40, seed=5)), "simulated"
    )
    features = rebuild_state(history)
    # Short rings and a short max age, so trimming and ageing out are both exercised.
    spec = SequenceSpec(length=6, feature_names=NAMES, max_age_ms=3 * DAY)
    wanted = np.ones(len(history), dtype=bool)
    memory = replay(OnlineSequences(spec), history, features, wanted)
    stored = replay(RedisSequences(state, spec), history, features, wanted)
    assert_same(stored, memory)
    flags = np.array([values[:, -1].sum() for values, _ in memory])
    assert (flags == spec.length).any() and (flags < spec.length).any()


def test_a_view_is_the_sequence_right_after_its_own_append_within_a_batch(
    state: RedisFeatureState,
) -> None:
    spec = SequenceSpec(length=4, feature_names=("A", "B"))
    store = RedisSequences(state, spec)
    x = np.array([[0.1, 1 / 3], [2.5, np.pi], [7.0, 1e-300]])
    views = store.append_many(
        ["c", "c", "c"],
        ["a", "b", "c"],
        [1_000, 2_000, 2_000],
        [1.0, 2.0, 3.0],
        x,
        [True, False, True],
    )
    first, second, third = views
    assert second is None and first is not None and third is not None
    assert first.transaction_ids == ["a"] and third.transaction_ids == ["a", "b", "c"]
    # Every bit of every double comes back.
    assert third.values[-3:, :2].tobytes() == x.tobytes()
    assert third.amounts == [1.0, 2.0, 3.0]


def test_an_id_already_in_the_sequence_is_not_appended_again(state: RedisFeatureState) -> None:
    spec = SequenceSpec(length=4, feature_names=("A",))
    store = RedisSequences(state, spec)
    store.append_many(["c"], ["a"], [1_000], [1.0], np.array([[1.0]]), [False])
    (again,) = store.append_many(["c"], ["a"], [1_000], [1.0], np.array([[9.0]]), [True])
    assert again is not None and again.transaction_ids == ["a"]
    assert again.values[-1, 0] == 1.0
    assert store.view("c", 1_000).transaction_ids == ["a"]


def test_the_list_is_capped_and_keyed_under_the_customers_tag(
    state: RedisFeatureState, redis_target: RedisTarget
) -> None:
    spec = SequenceSpec(length=3, feature_names=("A",), max_age_ms=DAY)
    store = RedisSequences(state, spec)
    n = 10
    store.append_many(
        ["c-7"] * n,
        [f"t{i}" for i in range(n)],
        list(range(n)),
        [1.0] * n,
        np.ones((n, 1)),
        [False] * n,
    )
    key = state.keys.customer_sequence("c-7")
    assert b"{c:c-7}" in key
    with redis_target.client(4) as client:
        assert client.llen(key) == 3
        assert 0 < client.pttl(key) <= DAY
    assert store.view("c-7", n).transaction_ids == ["t7", "t8", "t9"]
    assert store.view("nobody", n).transaction_ids == []
