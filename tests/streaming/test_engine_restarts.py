"""Redis (AOF on) and PostgreSQL restarted under two `riskscore consume` processes in one
group, mid-replay, on a real Tansu broker (the short versions of
`python -m service.benchmarks.consumer_faults --restart-command … --restarts 1`).

While an engine is down the consumers retry their batch (nothing is committed until its
records are durable) and carry on by themselves once it is back: every payment has one
record and one published decision, none refused, and every customer and terminal in
Redis has applied exactly its payments (none lost with the restart, none counted twice).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from service.benchmarks.consumer_faults import FaultReport, run_faults
from streaming.broker import EmbeddedBroker
from tests.postgres_server import throwaway_postgres
from tests.redis_server import RedisServer, start_redis, stop_redis

pytestmark = pytest.mark.slow

COUNT = 1500
# How long the engine stays down: the fault itself, long enough for the consumers to
# find it gone (they drain hundreds of payments a second), not a wait for anything.
DOWN_S = 3.0


def _restarted_once(
    bootstrap_servers: str, redis_url: str, postgres_url: str, restart: Callable[[], None]
) -> FaultReport:
    """The short run: two consumers, four partitions, one restart, no kills."""
    return run_faults(
        bootstrap_servers,
        redis_url,
        postgres_url,
        count=COUNT,
        consumers=2,
        kills=0,
        partitions=4,
        restarts=1,
        restart=restart,
    )


def _check(report: FaultReport) -> None:
    assert report.restart_seconds and len(report.restart_seconds) == report.restarts == 1
    assert report.records == report.distinct_records == COUNT  # each once, none lost
    assert report.missing == 0 and report.dead_letters == {}
    assert report.distinct_published == COUNT
    assert report.differing_republished == 0
    assert report.state_mismatches == 0
    # SIGTERM at the end: cleanly, or by the signal for a consumer still starting up.
    assert set(report.exit_codes) <= {0, -signal.SIGTERM}


def test_redis_restarted_with_its_aof_loses_no_payment_and_counts_each_once(
    broker: EmbeddedBroker, postgres_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    aof = ("--appendonly", "yes")
    servers: list[RedisServer] = [start_redis(directory, *aof)]
    port = servers[0].port

    def restart() -> None:
        stop_redis(servers[-1])  # SIGTERM: Redis finishes its AOF and exits
        time.sleep(DOWN_S)
        servers.append(start_redis(directory, *aof, port=port))

    try:
        report = _restarted_once(
            broker.bootstrap_servers, f"redis://127.0.0.1:{port}/0", postgres_url, restart
        )
    finally:
        stop_redis(servers[-1])
    _check(report)


def test_postgres_restarted_loses_no_payment_and_records_each_once(
    broker: EmbeddedBroker, redis_server: RedisServer
) -> None:
    with throwaway_postgres() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE faults")

        def restart() -> None:
            server.stop("immediate")  # as a crash: no clean shutdown of the database
            time.sleep(DOWN_S)
            server.start()

        report = _restarted_once(
            broker.bootstrap_servers, redis_server.url(9), server.url("faults"), restart
        )
    _check(report)
