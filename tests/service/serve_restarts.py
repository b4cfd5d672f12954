"""`kill -9` of `riskscore serve`, then `riskscore serve` again on the same ports and data
directory, as a supervisor's restart loop does: each start must reach ready.

The test runs a few cycles; for the figure, run it 20 times:

    python -m tests.service.serve_restarts --runs 20
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from streaming.broker import port_free

# Generous: on a machine shared with other work, a start took 40 s to reach ready.
READY_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def kill_and_restart(data_dir: Path, runs: int) -> list[float]:
    """Seconds from each start to ready; AssertionError (with the log) if one fails."""
    http_port, kafka_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "RISKSCORE_DATA_DIR": str(data_dir),
        "RISKSCORE_PORT": str(http_port),
        "RISKSCORE_KAFKA_EMBEDDED_PORT": str(kafka_port),
    }
    base = f"http://127.0.0.1:{http_port}"
    startup: list[float] = []
    for run in range(runs):
        log = data_dir / f"serve-{run}.log"
        started = time.monotonic()
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # Readiness is the condition waited on; the loop ends when it holds.
            while not _ready(base):
                waited = time.monotonic() - started
                if process.poll() is not None or waited > READY_TIMEOUT_S:
                    raise AssertionError(
                        f"start {run + 1} failed (exit code {process.poll()}, after "
                        f"{waited:.0f} s):\n{log.read_text()}"
                    )
                time.sleep(0.05)
            startup.append(time.monotonic() - started)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    # The last broker too ends with its parent.
    deadline = time.monotonic() + 10
    while not port_free(kafka_port):
        assert time.monotonic() < deadline, "the broker outlived its parent"
        time.sleep(0.02)
    return startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        times = kill_and_restart(Path(data_dir), args.runs)
    print(
        f"{len(times)}/{args.runs} starts after kill -9 reached ready; seconds to ready: "
        f"median {statistics.median(times):.2f}, max {max(times):.2f}"
    )


if __name__ == "__main__":
    main()
