"""The Kafka path against a real Kafka-protocol broker (Tansu), a real scorer and SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from service.scorer import Scorer
from service.stream_bridge import ScorerBridge
from streaming.broker import EmbeddedBroker, ensure_topics
from streaming.config import StreamConfig, Topics
from streaming.processor import StreamProcessor
from tests.streaming.conftest import broker_faults
from tests.streaming.conftest import payloads as _payloads
from tests.streaming.conftest import produce as _produce
from tests.streaming.conftest import read_topic as _read
from tests.streaming.tcp_proxy import behind_proxy

WAIT_S = 60.0


class Running:
    def __init__(self, processor: StreamProcessor) -> None:
        self.processor = processor
        self.stop = threading.Event()
        self.thread = threading.Thread(target=processor.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _processor(
    broker: EmbeddedBroker,
    topics: Topics,
    scorer: Scorer,
    loop: asyncio.AbstractEventLoop,
    flush_timeout_s: float = 30.0,
) -> StreamProcessor:
    bridge = ScorerBridge(scorer, loop)
    config = StreamConfig(
        bootstrap_servers=broker.bootstrap_servers,
        topics=topics,
        group_id=f"g-{topics.transactions}",
        session_timeout_ms=6000,
        max_batch=100,
        flush_timeout_s=flush_timeout_s,
        retry_backoff_max_s=0.5,
    )
    return StreamProcessor(config, bridge.score, bridge.labels)


def test_every_transaction_gets_one_decision_and_bad_records_go_to_the_dlq(
    broker: EmbeddedBroker, topics: Topics, scorer_on_loop: tuple[Scorer, Any]
) -> None:
    scorer, loop = scorer_on_loop
    payloads = _payloads(400)
    records = [(p["customer_id"].encode(), json.dumps(p).encode()) for p in payloads]
    bad = [(b"c", b"{not json"), (b"c", json.dumps({**payloads[0], "amount": -1}).encode())]
    _produce(broker, topics.transactions, records[:200] + bad + records[200:])

    with Running(_processor(broker, topics, scorer, loop)):
        decisions = _read(broker, topics.decisions, len(payloads))
        dead = _read(broker, topics.dead_letters, len(bad))

    ids = [r.key.decode() for r in decisions]
    assert sorted(ids) == sorted(p["transaction_id"] for p in payloads)
    stored = scorer.store.get(ids[0])
    assert stored is not None
    body = json.loads(decisions[0].value)
    assert body["transaction_id"] == ids[0] and body["score"] == stored.score
    assert body["reasons"] and body["stage"] == "fast"
    assert scorer.store.counts()["decisions"] == len(payloads)  # type: ignore[attr-defined]
    assert [r.value for r in dead] == [value for _, value in bad]
    headers = [dict(r.headers) for r in dead]
    assert [h["error.type"] for h in headers] == [b"invalid_json", b"validation_error"]
    assert b"amount" in headers[1]["error.message"]
    assert all(h["source.topic"] == topics.transactions.encode() for h in headers)


def test_a_payment_in_another_currency_is_a_dead_letter_saying_why(
    broker: EmbeddedBroker, topics: Topics, scorer_on_loop: tuple[Scorer, Any]
) -> None:
    # No rate table: only the configured currency (EUR) can go on the features' scale.
    scorer, loop = scorer_on_loop
    payloads = _payloads(3)
    dollars = {**payloads[1], "currency": "USD"}
    values = [json.dumps(p).encode() for p in (payloads[0], dollars, payloads[2])]
    _produce(broker, topics.transactions, [(b"c", v) for v in values])

    with Running(_processor(broker, topics, scorer, loop)):
        decisions = _read(broker, topics.decisions, 2)
        dead = _read(broker, topics.dead_letters, 1)

    assert sorted(r.key.decode() for r in decisions) == sorted(
        p["transaction_id"] for p in (payloads[0], payloads[2])
    )
    assert [r.value for r in dead] == [values[1]]
    headers = dict(dead[0].headers)
    assert headers["error.type"] == b"unsupported_currency"
    assert b"'USD'" in headers["error.message"]
    assert scorer.store.get(dollars["transaction_id"]) is None


def test_redelivered_transactions_are_not_decided_twice(
    broker: EmbeddedBroker, topics: Topics, scorer_on_loop: tuple[Scorer, Any]
) -> None:
    scorer, loop = scorer_on_loop
    payloads = _payloads(100)
    records = [(p["customer_id"].encode(), json.dumps(p).encode()) for p in payloads]
    # The same records twice: what a producer retry or a consumer crash before its commit
    # delivers. A reused id with another body is the record's fault: dead letter.
    conflict = {**payloads[5], "amount": payloads[5]["amount"] + 1}
    _produce(
        broker, topics.transactions, records + records + [(b"x", json.dumps(conflict).encode())]
    )

    with Running(_processor(broker, topics, scorer, loop)):
        decisions = _read(broker, topics.decisions, 2 * len(payloads))
        dead = _read(broker, topics.dead_letters, 1)

    assert scorer.store.counts()["decisions"] == len(payloads)  # type: ignore[attr-defined]
    by_id: dict[str, set[bytes]] = {}
    for record in decisions:
        by_id.setdefault(record.key.decode(), set()).add(record.value)
    assert len(decisions) == 2 * len(payloads)
    assert all(len(values) == 1 for values in by_id.values())  # re-published unchanged
    assert dict(dead[0].headers)["error.type"] == b"idempotency_conflict"


def test_labels_reach_the_feature_state_and_unknown_ones_are_dead_letters(
    broker: EmbeddedBroker, topics: Topics, scorer_on_loop: tuple[Scorer, Any]
) -> None:
    scorer, loop = scorer_on_loop
    payloads = _payloads(20)
    _produce(
        broker,
        topics.transactions,
        [(p["customer_id"].encode(), json.dumps(p).encode()) for p in payloads],
    )
    with Running(_processor(broker, topics, scorer, loop)):
        _read(broker, topics.decisions, len(payloads))
        labels = [
            (
                b"l",
                json.dumps(
                    {"transaction_id": payloads[0]["transaction_id"], "is_fraud": True}
                ).encode(),
            ),
            (b"l", json.dumps({"transaction_id": "never-seen", "is_fraud": True}).encode()),
        ]
        _produce(broker, topics.labels, labels)
        dead = _read(broker, topics.dead_letters, 1)
    assert [label.is_fraud for label in scorer.store.labels(payloads[0]["transaction_id"])] == [
        True
    ]
    assert dict(dead[0].headers)["error.type"] == b"not_found"


@broker_faults
def test_a_broker_outage_mid_run_loses_nothing(
    scorer_on_loop: tuple[Scorer, Any], tmp_path: Path
) -> None:
    scorer, loop = scorer_on_loop
    with behind_proxy() as (broker, proxy):
        names = Topics("tx-o", "dec-o", "dlq-o", "lab-o")
        ensure_topics(broker.bootstrap_servers, names.all(), partitions=2)
        sent = _payloads(2000, customers=300, seed=3)
        _produce(
            broker,
            names.transactions,
            [(p["customer_id"].encode(), json.dumps(p).encode()) for p in sent],
        )
        # Acknowledgements are awaited 1 s, so the 3 s outage fails batches for real.
        running = Running(_processor(broker, names, scorer, loop, flush_timeout_s=1.0))
        with running:
            while scorer.store.counts()["decisions"] < 300:  # type: ignore[attr-defined]
                assert running.thread.is_alive()
                time.sleep(0.02)  # waiting for the condition above, not for time
            proxy.cut()
            # The outage itself: the scenario is "unreachable for a few seconds".
            running.stop.wait(3.0)
            during_outage = scorer.store.counts()["decisions"]  # type: ignore[attr-defined]
            proxy.restore()
            decisions = _read(broker, names.decisions, len(sent), distinct_keys=True)
        assert running.processor.error is None
        assert during_outage < len(sent), "the outage did not interrupt the run"
        stats = running.processor.stats
        failures = stats.retries + stats.commit_failures + stats.reconnects
        assert failures > 0, "no failure path was exercised"
        stored = scorer.store.counts()["decisions"]  # type: ignore[attr-defined]
        assert stored == len(sent)
        assert {r.key.decode() for r in decisions} == {p["transaction_id"] for p in sent}


def test_records_that_cannot_be_forwarded_whole_still_reach_the_dlq(
    broker: EmbeddedBroker, topics: Topics, scorer_on_loop: tuple[Scorer, Any]
) -> None:
    scorer, loop = scorer_on_loop
    good = _payloads(5)
    # A value the broker took but that, with the dead-letter headers, exceeds the
    # client's request limit; and a tombstone (no value at all).
    huge = b"x" * 1_048_450
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send(topics.transactions, key=b"c", value=huge)
    producer.send(topics.transactions, key=b"c", value=None)
    for p in good:
        producer.send(topics.transactions, key=b"c", value=json.dumps(p).encode())
    producer.flush()
    producer.close()
    running = Running(_processor(broker, topics, scorer, loop))
    with running:
        decisions = _read(broker, topics.decisions, len(good))
        dead = _read(broker, topics.dead_letters, 2)
    assert running.processor.error is None
    assert len(decisions) == len(good)
    first, second = (dict(r.headers) for r in dead)
    assert first["dead_letter.value_bytes"] == str(len(huge)).encode() and dead[0].value == b""
    assert second["error.type"] == b"invalid_json" and dead[1].value == b""


def _failing(
    monkeypatch: pytest.MonkeyPatch,
    errors: list[Exception],
    thread: threading.Thread,
    cls: type = KafkaConsumer,
    method: str = "poll",
) -> list[Exception]:
    """The real client's ``method``, raising ``errors`` first in ``thread`` (faults of a
    broker outage that a short proxy cut does not produce on cue)."""
    real = getattr(cls, method)
    raised: list[Exception] = []

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if errors and threading.current_thread() is thread:
            raised.append(errors.pop(0))
            raise raised[-1]
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, failing)
    return raised


def test_a_poll_that_fails_for_a_while_is_retried(
    broker: EmbeddedBroker,
    topics: Topics,
    scorer_on_loop: tuple[Scorer, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer, loop = scorer_on_loop
    payloads = _payloads(50)
    _produce(broker, topics.transactions, [(b"c", json.dumps(p).encode()) for p in payloads])
    running = Running(_processor(broker, topics, scorer, loop))
    outage = [KafkaConnectionError("socket disconnected") for _ in range(3)]
    raised = _failing(monkeypatch, outage, running.thread)
    with running:
        decisions = _read(broker, topics.decisions, len(payloads))
    assert len(raised) == 3
    assert running.processor.error is None
    assert sorted(r.key.decode() for r in decisions) == sorted(
        p["transaction_id"] for p in payloads
    )


def test_a_poll_that_cannot_succeed_stops_the_consumer(
    broker: EmbeddedBroker,
    topics: Topics,
    scorer_on_loop: tuple[Scorer, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer, loop = scorer_on_loop
    processor = _processor(broker, topics, scorer, loop)
    refused = [TopicAuthorizationFailedError("not authorised")]
    _failing(monkeypatch, refused, threading.current_thread())
    with pytest.raises(TopicAuthorizationFailedError):
        processor.run(threading.Event())  # returns only by raising: no retry helps
    assert processor.error is not None
    assert "TopicAuthorizationFailed" in processor.error
