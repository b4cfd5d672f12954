"""`riskscore serve --workers N`: real worker processes on one port (SO_REUSEPORT) over a
real Redis and PostgreSQL, the parent supervising them; and the refusals with the
one-process backends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from service.cli.workers import Supervisor
from tests.redis_server import RedisServer, free_port
from tests.service.test_serve_process import _request

STARTUP_S = 300.0  # two model loads at once on a shared 2-core machine: 85 s seen
TX = {
    "timestamp": "2025-06-02T14:03:27Z",
    "terminal_id": "t-1",
    "amount": 120.0,
}
_PID = re.compile(r"^riskscore_process_id (\S+)$", re.M)
_READS = re.compile(
    r'^riskscore_http_requests_total\{route="/decisions/\{transaction_id\}",status="200"\} (\S+)$',
    re.M,
)


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", *args],
        env={**os.environ, "RISKSCORE_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("workers", "configured", "named"),
    [
        ("3", {}, ["RISKSCORE_FEATURE_STATE_URL", "RISKSCORE_AUDIT_URL"]),
        ("2", {"RISKSCORE_FEATURE_STATE_URL": "redis://127.0.0.1:1/0"}, ["RISKSCORE_AUDIT_URL"]),
        (
            "2",
            {"RISKSCORE_AUDIT_URL": "postgresql://riskscore@127.0.0.1:1/riskscore"},
            ["RISKSCORE_FEATURE_STATE_URL"],
        ),
    ],
)
def test_more_workers_on_a_default_backend_is_refused_naming_its_setting(
    tmp_path: Path, workers: str, configured: dict[str, str], named: list[str]
) -> None:
    result = _serve(
        "--workers", workers, RISKSCORE_DATA_DIR=str(tmp_path), RISKSCORE_KAFKA="off",
        **configured,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for setting in ("RISKSCORE_FEATURE_STATE_URL", "RISKSCORE_AUDIT_URL"):
        assert (setting in lines[0]) == (setting in named), lines[0]
    assert not (tmp_path / "audit.sqlite3").exists()  # refused before anything opened


def test_a_worker_that_cannot_start_stops_the_parent(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str
) -> None:
    result = _serve(
        "--workers",
        "2",
        RISKSCORE_KAFKA="off",
        RISKSCORE_FEATURE_STATE_URL=redis_server.url(4),
        RISKSCORE_AUDIT_URL=postgres_url,
        RISKSCORE_MODEL_DIR=str(tmp_path),  # no model there
    )
    assert result.returncode == 2
    assert "cannot load the model" in result.stderr
    assert "could not start; stopping the others" in result.stderr


def _scrape(base: str) -> tuple[int, float, str]:
    """One /metrics scrape on a new connection: the answering pid, its decision reads."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    pid = _PID.search(text)
    assert pid is not None, text
    reads = _READS.search(text)
    return int(float(pid.group(1))), float(reads.group(1)) if reads else 0.0, text


def _pids_answering(base: str, wanted: int, deadline: float) -> dict[int, float]:
    """Scrape until ``wanted`` distinct ready workers have answered: pid → decision reads."""
    seen: dict[int, float] = {}
    while len(seen) < wanted:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
        try:
            pid, reads, text = _scrape(base)
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.1)  # not listening yet: the next try is the wait
            continue
        if "riskscore_ready 1.0" in text:
            seen[pid] = reads
    return seen


@contextmanager
def _workers(
    tmp_path: Path, count: int, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--workers", str(count),
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "RISKSCORE_DATA_DIR": str(tmp_path), **env},
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()  # its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            process.wait()
        log.close()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for an init that does not reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_share_the_port_the_store_and_the_state_and_are_supervised(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str
) -> None:
    redis.Redis.from_url(redis_server.url(5)).flushdb()
    env = {
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_FEATURE_STATE_URL": redis_server.url(5),
        "RISKSCORE_AUDIT_URL": postgres_url,
    }
    with _workers(tmp_path, 2, env) as (base, parent):
        deadline = time.monotonic() + STARTUP_S
        first = _pids_answering(base, 2, deadline)
        # One customer's payments scored on new connections, so by both workers: the
        # feature state is shared, so each sees the ones before it (its count grows).
        scored = {}
        for i in range(20):
            tx = {**TX, "transaction_id": f"w-{i}", "customer_id": "c-1"}
            status, decision = _request(f"{base}/score", tx)
            assert status == 200, decision
            scored[tx["transaction_id"]] = decision
        counts = []
        for tid, decision in scored.items():
            status, record = _request(f"{base}/decisions/{tid}")
            assert status == 200 and record["score"] == decision["score"]
            values = {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}
            counts.append(values["CUSTOMER_ID_NB_TX_1DAY_WINDOW"])
        assert counts == [counts[0] + i for i in range(20)], counts
        # Every worker answered some of those reads (each counts its own).
        reads = _pids_answering(base, 2, deadline)
        assert set(reads) == set(first)
        assert all(count > 0 for count in reads.values()), reads
        assert sum(reads.values()) == 20

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # The parent starts another in its place; the port keeps answering meanwhile.
        while True:
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            now = _pids_answering(base, 1, deadline)
            if set(now) - set(first):
                break
        assert parent.poll() is None
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0
    log = (tmp_path / "serve.log").read_text()
    assert f"(pid {victim}) exited with signal 9" in log
    assert not any(_alive(pid) for pid in first)


def test_workers_stop_when_their_parent_is_killed(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str
) -> None:
    env = {
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_FEATURE_STATE_URL": redis_server.url(5),
        "RISKSCORE_AUDIT_URL": postgres_url,
    }
    with _workers(tmp_path, 2, env) as (base, parent):
        workers = _pids_answering(base, 2, time.monotonic() + STARTUP_S)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.1)  # their exit is the condition; this is the poll


def test_the_supervisor_gives_up_when_workers_keep_dying() -> None:
    dying = Supervisor(
        [sys.executable, "-c", "import sys; sys.exit(3)"],
        count=2,
        env=dict(os.environ),
        stop_timeout_s=5,
        max_restarts=3,
    )
    assert dying.run() == 1
    assert len(dying._restarts) == 4


@pytest.mark.parametrize("code", [0, 2])
def test_the_supervisor_stops_at_a_start_failure(code: int) -> None:
    # Exit code 2 is a worker that could not start; anything else is restarted.
    script = f"import sys; sys.exit({code})"
    supervisor = Supervisor(
        [sys.executable, "-c", script], count=1, env=dict(os.environ), stop_timeout_s=5,
        max_restarts=2,
    )  # fmt: skip
    assert supervisor.run() == (2 if code == 2 else 1)


def test_a_restarted_worker_failing_like_a_start_failure_is_restarted(tmp_path: Path) -> None:
    # The first run dies (3); every later run exits 2, as a worker does when a backend is
    # unreachable. After a first run, 2 is a death like any other: restarted until the
    # restart budget is spent (exit 1), not every worker stopped as for a bad setting (2).
    marker = tmp_path / "ran-once"
    script = (
        "import pathlib, sys; m = pathlib.Path(sys.argv[1]);"
        " sys.exit(2 if m.exists() else (m.touch() or 3))"
    )
    supervisor = Supervisor(
        [sys.executable, "-c", script, str(marker)], count=1, env=dict(os.environ),
        stop_timeout_s=5, max_restarts=2,
    )  # fmt: skip
    assert supervisor.run() == 1
    assert len(supervisor._restarts) == 3
