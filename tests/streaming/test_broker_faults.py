"""A connection reset at each phase of the consumer's work, cut on cue by a proxy that reads
the Kafka request's API key (not by timing luck): the consumer goes on, and every
transaction gets exactly one decision in the audit store.

The decisions topic is at-least-once: a batch whose offset commit failed is delivered again
and its decisions published again — the same bytes, from the store, not decided twice.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, UnknownMemberIdError

from service.scorer import Scorer
from streaming.broker import EmbeddedBroker, ensure_topics
from streaming.config import Topics
from tests.streaming.conftest import BROKER_FAULTS, payloads, produce, read_topic
from tests.streaming.tcp_proxy import (
    API_VERSIONS,
    FETCH,
    FIND_COORDINATOR,
    JOIN_GROUP,
    OFFSET_COMMIT,
    PRODUCE,
    behind_proxy,
)
from tests.streaming.test_stream_processing import Running, _failing, _processor

pytestmark = BROKER_FAULTS
RESETS = 2
WAIT_S = 60.0
PHASES = {
    "bootstrap": API_VERSIONS,
    "coordinator-lookup": FIND_COORDINATOR,
    "group-join": JOIN_GROUP,
    "fetch": FETCH,
    "produce": PRODUCE,
    "commit": OFFSET_COMMIT,
}


@pytest.mark.parametrize("after_request", [False, True], ids=["request-lost", "answer-lost"])
@pytest.mark.parametrize("api_key", PHASES.values(), ids=PHASES.keys())
def test_a_connection_reset_at_each_phase_loses_and_doubles_nothing(
    scorer_on_loop: tuple[Scorer, Any], api_key: int, after_request: bool
) -> None:
    scorer, loop = scorer_on_loop
    with behind_proxy() as (broker, proxy):
        names = Topics(f"tx-{api_key}", f"dec-{api_key}", f"dlq-{api_key}", f"lab-{api_key}")
        ensure_topics(broker.bootstrap_servers, names.all(), partitions=2)
        sent = payloads(300, customers=60, seed=5)
        records = [(p["customer_id"].encode(), json.dumps(p).encode()) for p in sent]
        produce(broker, names.transactions, records)
        # Armed before the consumer starts, and the consumer is the only client until
        # the faults are spent: they hit its requests, at their first occurrences.
        proxy.reset_on(api_key, times=RESETS, after_request=after_request)
        running = Running(_processor(broker, names, scorer, loop, flush_timeout_s=5.0))
        with running:
            deadline = time.monotonic() + WAIT_S
            # At least one cut at this phase. A client whose answer was lost does not
            # always ask again (a coordinator found through the next metadata answer), so
            # the second armed reset may never come: it is disarmed rather than left for
            # the clients that read the result.
            while proxy.resets[api_key] < 1:  # the condition waited on
                assert running.thread.is_alive(), running.processor.error
                assert time.monotonic() < deadline, f"only {proxy.resets} resets"
                time.sleep(0.02)
            settle = time.monotonic() + 2.0
            while proxy.resets[api_key] < RESETS and time.monotonic() < settle:
                time.sleep(0.02)  # a moment for the second reset, not a synchronisation
            proxy.disarm(api_key)
            decisions = read_topic(broker, names.decisions, len(sent), distinct_keys=True)
            assert running.thread.is_alive(), running.processor.error
        assert running.processor.error is None
    assert scorer.store.counts()["decisions"] == len(sent)  # type: ignore[attr-defined]
    published: dict[str, set[bytes]] = {}
    for record in decisions:
        published.setdefault(record.key.decode(), set()).add(record.value)
    assert set(published) == {p["transaction_id"] for p in sent}
    assert all(len(values) == 1 for values in published.values())  # re-sent unchanged


# Faults as the client library raises them, where the proxy cannot provoke them on cue:
# a connection error out of a send, a coordinator that forgot this member (after it moved),
# a client that cannot connect at all.
RAISED = {
    "send-connection-reset": (KafkaProducer, "send", KafkaConnectionError("[Errno 104] reset")),
    "poll-unknown-member": (KafkaConsumer, "poll", UnknownMemberIdError("coordinator moved")),
    "connect": (KafkaConsumer, "__init__", KafkaConnectionError("no broker answered")),
}


@pytest.mark.parametrize("fault", RAISED.values(), ids=RAISED.keys())
def test_a_transient_client_error_anywhere_is_retried(
    broker: EmbeddedBroker,
    topics: Topics,
    scorer_on_loop: tuple[Scorer, Any],
    monkeypatch: pytest.MonkeyPatch,
    fault: tuple[type, str, Exception],
) -> None:
    scorer, loop = scorer_on_loop
    sent = payloads(50)
    produce(broker, topics.transactions, [(b"c", json.dumps(p).encode()) for p in sent])
    running = Running(_processor(broker, topics, scorer, loop))
    cls, method, error = fault
    raised = _failing(monkeypatch, [error, error], running.thread, cls, method)
    with running:
        decisions = read_topic(broker, topics.decisions, len(sent), distinct_keys=True)
        assert running.thread.is_alive(), running.processor.error
    assert len(raised) == 2
    assert running.processor.error is None
    assert scorer.store.counts()["decisions"] == len(sent)  # type: ignore[attr-defined]
    assert {r.key.decode() for r in decisions} == {p["transaction_id"] for p in sent}
