"""Three `riskscore consume` processes in one consumer group on a real Tansu broker, Redis
and PostgreSQL, one of them killed with SIGKILL twice during the replay (the short version
of `python -m service.benchmarks.consumer_faults`): every payment is decided and recorded
once, none lost or refused, a re-published decision is the recorded one, and the shared
feature state applied each payment once.

A consumer killed after its batch reached Redis but before the records were durable leaves
those payments applied without a record; their re-delivery gets back the features they
were first given (the state keeps them with the id) and is decided then.
"""

from __future__ import annotations

import signal

import pytest

from service.benchmarks.consumer_faults import run_faults
from streaming.broker import EmbeddedBroker
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow


def test_three_consumers_one_group_killed_twice_record_each_payment_once(
    broker: EmbeddedBroker, redis_server: RedisServer, postgres_url: str
) -> None:
    report = run_faults(
        broker.bootstrap_servers,
        redis_server.url(6),
        postgres_url,
        count=3000,
        consumers=3,
        kills=2,
        partitions=6,
    )
    assert report.records == report.distinct_records == 3000  # each once, none lost
    assert report.missing == 0
    assert report.dead_letters == {}  # none refused: applied-but-unrecorded ones decided
    assert report.distinct_published == 3000
    assert report.differing_republished == 0  # a re-published decision is the same bytes
    assert report.state_mismatches == 0  # each payment applied to Redis once
    # Each stopped on SIGTERM: cleanly (0), or, for a restarted consumer still starting up
    # when signalled on a slow machine, by the signal itself (-15; its handler is not yet
    # installed: a known gap of `riskscore consume`) — never another failure.
    assert set(report.exit_codes) <= {0, -signal.SIGTERM}
