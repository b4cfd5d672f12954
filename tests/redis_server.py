"""A real, throwaway ``redis-server`` for the tests of the Redis feature-state backend.

Started once per test session on a free port in a temporary directory (no persistence),
stopped at the end. Without the binary the tests fail, naming the package to install:
a missing component must not pass as a skipped test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

INSTALL_HINT = "sudo apt-get install redis-server (Redis >= 7) or a Valkey package"
READY_LINE = "Ready to accept connections"


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[str]
    log_reader: threading.Thread

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def flush(self, db: int = 0) -> None:
        """Empty the database (every node's)."""
        with self.client(db) as client:
            client.flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path, *extra: str, port: int | None = None) -> RedisServer:
    """Start redis-server in ``directory`` (on ``port``, else a free one); returns once it
    says it accepts connections. ``extra`` options come last: they win (``--appendonly
    yes`` turns the AOF on)."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        pytest.fail(f"redis-server is not installed; install it with: {INSTALL_HINT}")
    port = free_port() if port is None else port
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--loglevel", "notice", *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # the server's log: wait for its own word that it is ready
        seen.append(line)
        if READY_LINE in line:
            # Keep reading its log, or a full pipe would one day stall the server.
            reader = threading.Thread(target=_drain, args=(process,), daemon=True)
            reader.start()
            return RedisServer(port, process, reader)
    process.wait()
    pytest.fail("redis-server did not start:\n" + "".join(seen[-20:]))


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    process.stdout.read()
    process.stdout.close()


def stop_redis(server: RedisServer) -> None:
    server.process.terminate()
    server.process.wait(timeout=10)
    server.log_reader.join(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        stop_redis(server)
