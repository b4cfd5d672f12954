"""A real, throwaway Redis Cluster of three primaries for the feature-state tests.

Three ``redis-server`` processes with ``cluster-enabled yes`` on free ports, each in its
own temporary directory (no persistence), joined by ``redis-cli --cluster create`` (no
replicas: the slots split three ways), then polled until every node says
``cluster_state:ok``. Started once per test session, stopped at the end. Without the
binaries the tests fail at once, naming the package to install, as the standalone
server's fixture does (``tests/redis_server.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
from redis.cluster import RedisCluster

from tests.redis_server import INSTALL_HINT, RedisServer, free_port, start_redis, stop_redis

PRIMARIES = 3
# How long the nodes may take to agree on the slots: seconds on an idle machine, more on
# a loaded one; polled, not slept.
_AGREEMENT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClusterTls:
    """A TLS-only cluster with a password: the self-signed certificate (its own
    authority) and key every node presents, and the password every node asks for."""

    cert: Path
    key: Path
    password: str

    def server_options(self, port: int) -> tuple[str, ...]:
        return (
            *("--port", "0", "--tls-port", str(port), "--tls-cluster", "yes"),
            *("--tls-replication", "yes", "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key)),
            *("--tls-ca-cert-file", str(self.cert)),
            *("--requirepass", self.password, "--masterauth", self.password),
        )

    def cli_options(self) -> tuple[str, ...]:
        return ("--tls", "--cacert", str(self.cert), "-a", self.password, "--no-auth-warning")

    def client_options(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.cert), "password": self.password}


@dataclass(frozen=True)
class RedisClusterServers:
    nodes: tuple[RedisServer, ...]
    tls: ClusterTls | None = None

    def url(self, db: int = 0) -> str:
        """The cluster URL (every node named; Cluster has database 0 only, so ``db`` is
        ignored: tests that use several databases on one server flush the cluster)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        if self.tls is None:
            return f"redis+cluster://{hosts}"
        return (
            f"rediss+cluster://:{self.tls.password}@{hosts}"
            f"?ssl_ca_certs={self.tls.cert}&ssl_cert_reqs=required"
        )

    def _client_options(self) -> dict[str, Any]:
        return {} if self.tls is None else self.tls.client_options()

    def client(self, db: int = 0) -> RedisCluster:
        """A client of the whole cluster (``db`` ignored, as in :meth:`url`)."""
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, **self._client_options())

    def flush(self, db: int = 0) -> None:
        """Empty the database (every node's)."""
        with self.client(db) as client:
            client.flushdb()

    def node_clients(self) -> list[redis.Redis]:
        return [
            redis.Redis(host="127.0.0.1", port=node.port, **self._client_options())
            for node in self.nodes
        ]


def start_cluster(
    directory: Path,
    primaries: int = PRIMARIES,
    replicas: int = 0,
    node_timeout_ms: int = 5000,
    tls: ClusterTls | None = None,
) -> RedisClusterServers:
    """Start ``primaries`` cluster-enabled servers in ``directory`` (and ``replicas`` for
    each) and join them. A node silent for ``node_timeout_ms`` is failed over. With
    ``tls`` the nodes speak TLS only, to clients and to each other."""
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if cli is None:
        pytest.fail(f"redis-cli is not installed; install it with: {INSTALL_HINT}")
    nodes: list[RedisServer] = []
    try:
        for i in range(primaries * (1 + replicas)):
            home = directory / f"node-{i}"
            home.mkdir()
            port = free_port()
            nodes.append(
                start_redis(
                    home,
                    *(() if tls is None else tls.server_options(port)),
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(node_timeout_ms)),
                    # The bus port is the client port + 10000 unless named: a free one.
                    *("--cluster-port", str(free_port())),
                    port=port,
                )
            )
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        options = (*(() if tls is None else tls.cli_options()), "--cluster", "create")
        joined = (*addresses, "--cluster-replicas", str(replicas), "--cluster-yes")
        created = subprocess.run(
            [cli, *options, *joined],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        servers = RedisClusterServers(tuple(nodes), tls)
        _wait_until_ok(servers)
        return servers
    except BaseException:
        for node in nodes:
            stop_redis(node)
        raise


def _wait_until_ok(servers: RedisClusterServers) -> None:
    """Poll every node until each one says the cluster is ok and knows all the nodes."""
    deadline = time.monotonic() + _AGREEMENT_TIMEOUT_S
    clients = servers.node_clients()
    try:
        while True:
            infos = [client.cluster("INFO") for client in clients]
            if all(_ok(info, len(clients)) for info in infos):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the cluster did not come up: {infos}")
            time.sleep(0.1)  # polling interval, not a wait standing in for a condition
    finally:
        for client in clients:
            client.close()


def _ok(info: dict[str, str], nodes: int) -> bool:
    return info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(nodes)


def function_libraries(port: int) -> list[bytes]:
    """The names of the function libraries a node holds (FUNCTION LIST, RESP2 pairs)."""
    with redis.Redis(host="127.0.0.1", port=port) as node:
        return [lib[lib.index(b"library_name") + 1] for lib in node.function_list()]


def stop_cluster(servers: RedisClusterServers) -> None:
    for node in servers.nodes:
        stop_redis(node)


class RedisTarget(Protocol):
    """What the Redis backend's tests need of a standalone server or a cluster: the URL
    of a database and a client of it (one whose FLUSHDB empties it, on every node)."""

    def url(self, db: int = 0) -> str: ...

    def client(self, db: int = 0) -> redis.Redis | RedisCluster: ...

    def flush(self, db: int = 0) -> None: ...


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield servers
    finally:
        stop_cluster(servers)


@pytest.fixture(params=["standalone", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The Redis backend's tests run twice: on one server and on a 3-primary cluster."""
    name = "redis_server" if request.param == "standalone" else "redis_cluster"
    target: RedisTarget = request.getfixturevalue(name)
    return target
