"""The Kafka path against a real Kafka-protocol broker (Tansu), a real scorer and SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from features.data import frame_from_pandas
from features.simulator import SimulationConfig, simulate
from service.app import build_scorer
from service.scorer import Scorer
from service.settings import Settings
from service.stream_bridge import ScorerBridge
from streaming.broker import EmbeddedBroker, ensure_topics
from streaming.config import StreamConfig, Topics
from streaming.processor import StreamProcessor

WAIT_S = 60.0


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(port=0) as running:
        yield running


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    names = Topics(
        transactions=f"tx-{suffix}",
        decisions=f"dec-{suffix}",
        dead_letters=f"dlq-{suffix}",
        labels=f"lab-{suffix}",
    )
    ensure_topics(broker.bootstrap_servers, names.all(), partitions=2)
    return names


@pytest.fixture
def scorer_on_loop(tmp_path: Path) -> Iterator[tuple[Scorer, asyncio.AbstractEventLoop]]:
    """A real scorer whose event loop runs in a thread, as under `riskscore serve`."""
    scorer = build_scorer(Settings(data_dir=tmp_path / "var", kafka="off"))
    scorer.warm_start(from_store=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield scorer, loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    scorer.store.close()


def _payloads(n: int) -> list[dict[str, Any]]:
    config = SimulationConfig(customers=50, terminals=80, days=20, start=date(2025, 2, 1), seed=9)
    frame = frame_from_pandas(simulate(config), source="simulated")
    return list(frame.payloads("k-"))[:n]


def _produce(broker: EmbeddedBroker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _read(broker: EmbeddedBroker, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic``, read until ``expected`` arrived (or the deadline)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[Any] = []
    deadline = time.monotonic() + WAIT_S
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    # One more short poll: more than expected would be a duplicate we must see.
    for batch in consumer.poll(timeout_ms=500).values():
        records.extend(batch)
    consumer.close()
    return records


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
    broker: EmbeddedBroker, topics: Topics, scorer: Scorer, loop: asyncio.AbstractEventLoop
) -> StreamProcessor:
    bridge = ScorerBridge(scorer, loop)
    config = StreamConfig(
        bootstrap_servers=broker.bootstrap_servers,
        topics=topics,
        group_id=f"g-{topics.transactions}",
        session_timeout_ms=6000,
        max_batch=100,
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
