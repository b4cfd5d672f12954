"""Three `riskscore consume` processes in one consumer group on a real Tansu broker, Redis
and PostgreSQL, one of them killed with SIGKILL twice during the replay: every payment has
exactly one decision record and one distinct published decision (the short version of
`python -m service.benchmarks.consumer_faults`)."""

from __future__ import annotations

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
    assert report.records == report.distinct_records == 3000  # one record each
    assert report.missing == 0
    assert report.distinct_published == 3000
    assert report.differing_republished == 0  # a re-published decision is the same bytes
    assert report.exit_codes == [0, 0, 0]  # each stopped cleanly on SIGTERM
    assert report.ok
