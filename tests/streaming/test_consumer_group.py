"""Three `riskscore consume` processes in one consumer group on a real Tansu broker, Redis
and PostgreSQL, one of them killed with SIGKILL twice during the replay (the short version
of `python -m service.benchmarks.consumer_faults`): no payment is recorded twice or lost
silently, and a re-published decision is the recorded one.

Not yet the issue's target (one decision for every payment): a consumer killed after its
batch reached Redis but before the records were durable leaves those payments applied to
the shared state without a record, and their re-delivery is refused as
``idempotency_conflict`` (dead-lettered: "send it with a new id"), as over HTTP. The test
holds that to exactly this one kind of refusal; the README gives the measured count."""

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
    assert report.records == report.distinct_records  # never two records for one payment
    assert report.missing == 0  # each has a record or a dead letter saying why not
    assert report.records + sum(report.dead_letters.values()) == 3000
    assert set(report.dead_letters) <= {"idempotency_conflict"}
    assert report.distinct_published == report.records
    assert report.differing_republished == 0  # a re-published decision is the same bytes
    # Each stopped on SIGTERM: cleanly (0), or, for a restarted consumer still starting up
    # when signalled on a slow machine, by the signal itself (-15; its handler is not yet
    # installed: a known gap of `riskscore consume`) — never another failure.
    assert set(report.exit_codes) <= {0, -signal.SIGTERM}
