"""A primary of a real Redis Cluster (3 primaries, a replica each) killed under the
``redis`` backend: the client follows the cluster to the promoted replica (or, while no
primary serves the slot beyond its retries, the payment is refused with a clear error
and retried), and the same backend goes on with the same windows and the same functions
(replicated with the data), without a restart of the process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from features.redis_cluster_state import RedisClusterFeatureState, open_redis_state
from features.redis_state import LIBRARY
from features.state import FeatureStateUnavailable
from tests.redis_cluster import RedisClusterServers, function_libraries, start_cluster
from tests.redis_server import RedisServer, stop_redis

DAY = 86_400_000
# How long the failover may take: the node timeout (1 s here), the election, the clients'
# refresh; polled, not slept.
FAILOVER_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    servers = start_cluster(tmp_path, primaries=3, replicas=1, node_timeout_ms=1000)
    try:
        yield servers
    finally:
        for node in servers.nodes:
            if node.process.poll() is None:
                stop_redis(node)


def _node_of(cluster: RedisClusterServers, key: bytes) -> tuple[RedisServer, RedisServer]:
    """The primary serving ``key`` and its replica, as the nodes say (ROLE)."""
    with cluster.client() as client:
        port = int(client.get_node_from_key(key).port)
    by_port = {node.port: node for node in cluster.nodes}
    for node in cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port) as client:
            role = client.execute_command("ROLE")
        if role[0] == b"slave" and int(role[2]) == port:
            return by_port[port], node
    raise AssertionError(f"no replica of the primary on port {port}")


def _poll(condition: object, what: str) -> None:
    deadline = time.monotonic() + FAILOVER_TIMEOUT_S
    assert callable(condition)
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {FAILOVER_TIMEOUT_S} s")
        time.sleep(0.1)  # polling interval, not a wait standing in for a condition


def test_a_failover_keeps_the_windows_and_the_functions(cluster: RedisClusterServers) -> None:
    state = open_redis_state(cluster.url(), timeout_s=1.0)
    assert isinstance(state, RedisClusterFeatureState)
    count = list(state.feature_names).index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")
    try:
        assert state.update_raw("tx-1", "c-1", "t-1", DAY, DAY, 10.0)[count] == 1.0
        key = state.keys.customer("c-1")
        primary, replica = _node_of(cluster, key)

        def replicated() -> bool:
            with redis.Redis(host="127.0.0.1", port=replica.port) as node:
                node.execute_command("READONLY")
                return bool(node.exists(key))

        _poll(replicated, "the replica did not copy the customer's state")
        stop_redis(primary)
        refused: list[str] = []

        def served() -> bool:
            try:
                x = state.update_raw("tx-2", "c-1", "t-1", DAY + 1, DAY + 1, 20.0)
            except FeatureStateUnavailable as exc:
                # No primary for the slot yet, beyond the client's own retries: a clear
                # error, nothing applied; the payment is retried, as a caller would.
                refused.append(str(exc))
                return False
            # The first payment is still in the customer's windows, the second counted once.
            assert x[count] == 2.0
            return True

        # Served either by the client's own retries (they follow the cluster to the
        # promoted replica) or by a retry of the payment after a 503.
        _poll(served, "the payment was not served after the failover")
        assert all(message.startswith("feature state") for message in refused)
        with redis.Redis(host="127.0.0.1", port=replica.port) as node:
            assert node.execute_command("ROLE")[0] == b"master"
        # The functions came with the data: the promoted replica runs them.
        assert function_libraries(replica.port) == [LIBRARY.encode()]
        # A later payment counts on from there.
        again = state.update_raw("tx-3", "c-1", "t-1", DAY + 2, DAY + 2, 30.0)
        assert again[count] == 3.0
    finally:
        state.close()
