"""What only Redis Cluster asks of the ``redis`` backend, on a real 3-primary cluster:
every call's keys in one slot (as the server computes it), a batch pipelined (one write
per node, not one per command), the functions on every primary, clear errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from redis.connection import Connection

from features.redis_cluster_state import RedisClusterFeatureState, open_redis_state
from features.redis_cluster_url import split_cluster_url
from features.redis_state import LIBRARY
from features.state import FeatureStateUnavailable
from tests.redis_cluster import RedisClusterServers, function_libraries
from tests.redis_server import free_port

DAY = 86_400_000


@pytest.fixture
def state(redis_cluster: RedisClusterServers) -> Iterator[RedisClusterFeatureState]:
    redis_cluster.flush()
    backend = open_redis_state(redis_cluster.url())
    assert isinstance(backend, RedisClusterFeatureState)
    try:
        yield backend
    finally:
        backend.close()


def _server_slot(cluster: RedisClusterServers, key: bytes) -> int:
    """The slot as Redis itself computes it (CLUSTER KEYSLOT), not the client's copy."""
    node = cluster.node_clients()[0]
    try:
        return int(node.execute_command("CLUSTER KEYSLOT", key))
    finally:
        node.close()


@pytest.mark.parametrize(
    ("customer", "terminal"), [("c-42", "t-9"), ("c:{odd}", "t}x{"), ("ü-7", "42")]
)
def test_every_key_of_an_entity_and_of_each_call_shares_one_slot(
    state: RedisClusterFeatureState,
    redis_cluster: RedisClusterServers,
    customer: str,
    terminal: str,
) -> None:
    keys = state.keys
    customer_slot = _server_slot(redis_cluster, keys.customer(customer))
    # The customer-at-terminal and the sequence carry the customer's tag: same slot.
    assert _server_slot(redis_cluster, keys.customer_terminal(customer, terminal)) == (
        customer_slot
    )
    assert _server_slot(redis_cluster, keys.customer_sequence(customer)) == customer_slot
    # Every FCALL a payment makes names keys of one slot only.
    entity_keys = [build(customer, terminal) for build in state._builders]
    for call, _ in state._call_tails:
        slots = {_server_slot(redis_cluster, entity_keys[kind]) for kind in call}
        assert len(slots) == 1, call
    # ...and it is applied: no CROSSSLOT error from the server.
    x = state.update_raw("tx-1", customer, terminal, DAY, DAY, 10.0)
    assert x[list(state.feature_names).index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 1.0


def test_a_batch_is_one_write_per_node_and_no_key_lookup_per_command(
    state: RedisClusterFeatureState,
    redis_cluster: RedisClusterServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A spy on the socket writes (the real method still runs).
    writes: list[str] = []
    send = Connection.send_packed_command

    def counted(self: Connection, command: object, check_health: bool = True) -> None:
        writes.append(f"{self.host}:{self.port}")
        send(self, command, check_health)

    n = 60
    args = (
        [f"tx-{i}" for i in range(n)],
        [f"c-{i % 17}" for i in range(n)],
        [f"t-{i % 23}" for i in range(n)],
        [DAY + i for i in range(n)],
        [DAY + i for i in range(n)],
        [float(i) for i in range(n)],
    )
    # Warm: connections open, the command table known.
    state.update_many(["warm"], ["c-warm"], ["t-warm"], [DAY], [DAY], [1.0])
    nodes = redis_cluster.node_clients()
    for node in nodes:
        node.config_resetstat()
    monkeypatch.setattr(Connection, "send_packed_command", counted)
    update = state.update_many(*args)
    monkeypatch.undo()
    assert update.refused == [] and not np.isnan(update.values).any()
    # 180 commands (two FCALLs and a SET per payment) spread over the three primaries,
    # written as one packed write to each: one round trip per node, not per command.
    assert len(writes) == len(set(writes)) <= len(nodes)
    stats = [node.info("commandstats") for node in nodes]
    assert sum(s.get("cmdstat_fcall", {}).get("calls", 0) for s in stats) == 2 * n
    assert all("cmdstat_set" in s for s in stats)  # the keys did spread over every node
    # The client found each FCALL's keys itself, asking no node for them.
    assert not any("cmdstat_command|getkeys" in s for s in stats)
    for node in nodes:
        node.close()


def test_the_functions_reach_every_primary_and_a_primary_without_them_gets_them(
    state: RedisClusterFeatureState, redis_cluster: RedisClusterServers
) -> None:
    nodes = redis_cluster.node_clients()
    assert all(function_libraries(n.port) == [LIBRARY.encode()] for n in redis_cluster.nodes)
    # One primary loses them (restarted empty, or new): its calls are refused, the
    # library is loaded again and those calls sent once more.
    nodes[1].function_flush()
    n = 40
    update = state.update_many(
        [f"tx-{i}" for i in range(n)],
        [f"c-{i}" for i in range(n)],
        [f"t-{i}" for i in range(n)],
        [DAY] * n,
        [DAY] * n,
        [5.0] * n,
    )
    assert update.refused == []
    count = list(state.feature_names).index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")
    assert (update.values[:, count] == 1.0).all()
    assert function_libraries(redis_cluster.nodes[1].port) == [LIBRARY.encode()]
    for node in nodes:
        node.close()


def test_an_unreachable_cluster_is_one_clear_error() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(FeatureStateUnavailable, match=r"feature state at redis\+cluster://"):
        open_redis_state(url, timeout_s=1.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://a:7000/1", "database 0 only"),
        ("redis+cluster://a:7000,,b:7001", "HOST:PORT, comma-separated"),
        ("redis+cluster://a:70000", "HOST:PORT"),
        ("redis://a:7000", "must start with redis\\+cluster://"),
    ],
)
def test_a_malformed_cluster_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_cluster_url(url)


def test_credentials_and_tls_options_reach_every_node() -> None:
    first, others = split_cluster_url(
        "rediss+cluster://app:s3cret@r1.internal:7000,r2.internal,[fd00::3]:7002/0"
        "?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    )
    # The first node's URL carries them; redis-py applies them to every node it finds.
    assert first == (
        "rediss://app:s3cret@r1.internal:7000?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    )
    assert others == [("r2.internal", 6379), ("fd00::3", 7002)]
