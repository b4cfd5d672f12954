"""A server under test in its own process: a free port, the riskscore command, start it,
wait until it is ready, stop it.

The benchmarks that drive a running service (``bench_peers``, ``bench_cascade``,
``bench_stream``) start it this way, as it is deployed: a separate process, configured by
its environment, its output in a log file that an error quotes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """The benchmark cannot run here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def riskscore_command(*args: str) -> list[str]:
    """``riskscore ARGS`` run by this interpreter: the same installation as the caller."""
    return [sys.executable, "-m", "service.cli", *args]


def riskscore_env(**settings: str) -> dict[str, str]:
    """This process's environment plus ``RISKSCORE_<NAME>`` for each setting given."""
    return {**os.environ, **{f"RISKSCORE_{k.upper()}": v for k, v in settings.items()}}


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited with {process.returncode}; log tail:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)  # polling a starting server, bounded by the deadline
    raise BenchError(f"{url} not ready after {timeout_s:.0f} s (log: {log})")


def tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:]


@contextmanager
def server(
    command: list[str], env: dict[str, str], ready_url: str | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (stdout and stderr into ``log``) until the block ends, then SIGTERM
    it and wait for it to finish; with a ``ready_url``, the block starts once that answers
    200 (a server that exits before it is ready is an error quoting its log)."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            if ready_url is not None:
                wait_ready(ready_url, process, log)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
