"""Kafka mode against a real broker (Tansu, as in the streaming tests) and a small fake
scorer that answers each transaction with a decision keyed by its id."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from loadtest.kafka_mode import KafkaTarget, KafkaTopics, consumer_lag
from loadtest.runner import RunConfig, run_once
from loadtest.schedule import Plan
from loadtest.workload import body_stream, load_workload
from streaming.broker import EmbeddedBroker, ensure_topics


@pytest.fixture
def topics(broker: EmbeddedBroker) -> KafkaTopics:
    suffix = uuid.uuid4().hex[:8]
    names = KafkaTopics(f"tx-{suffix}", f"dec-{suffix}", f"dlq-{suffix}", f"group-{suffix}")
    ensure_topics(
        broker.bootstrap_servers,
        (names.transactions, names.decisions, names.dead_letters),
        partitions=2,
    )
    return names


class FakeScorer(threading.Thread):
    """Decides every transaction (a dead letter when its amount is above ``reject_above``),
    commits its offsets as the real consumer group would."""

    def __init__(self, servers: str, topics: KafkaTopics, reject_above: float) -> None:
        super().__init__(name="fake-scorer")
        self.servers, self.topics, self.reject_above = servers, topics, reject_above
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.decided = 0

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=self.topics.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        consumer.assign([TopicPartition(self.topics.transactions, p) for p in (0, 1)])
        producer = KafkaProducer(bootstrap_servers=self.servers, linger_ms=1)
        self.ready.set()
        try:
            while not self.stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    for record in records:
                        self._answer(producer, record.value)
                producer.flush()
                consumer.commit()
        finally:
            producer.close()
            consumer.close()

    def _answer(self, producer: KafkaProducer, value: bytes) -> None:
        body = json.loads(value)
        if body["amount"] > self.reject_above:
            headers = [("error.type", b"validation_error")]
            producer.send(self.topics.dead_letters, value=value, headers=headers)
            return
        decision = {"transaction_id": body["transaction_id"], "score": 0.1, "action": "approve"}
        producer.send(
            self.topics.decisions,
            key=str(body["transaction_id"]).encode(),
            value=json.dumps(decision).encode(),
        )
        self.decided += 1


async def test_each_decision_is_matched_to_its_transaction(
    broker: EmbeddedBroker, topics: KafkaTopics, history_csv: Path
) -> None:
    workload = load_workload(history_csv, limit=200)
    amounts = sorted(float(b["amount"]) for b in workload.bodies[:60])  # type: ignore[arg-type]
    reject_above = amounts[-6]  # the 5 largest of the 60 sent go to the dead letters
    scorer = FakeScorer(broker.bootstrap_servers, topics, reject_above)
    scorer.start()
    assert scorer.ready.wait(30)
    try:
        config = RunConfig(plan=Plan(duration_s=1.5, warmup_s=0.0, drain_timeout_s=15), rate=40.0)
        report = await run_once(
            lambda recorder: KafkaTarget(broker.bootstrap_servers, recorder, topics),
            workload,
            body_stream(workload, "kt"),
            config,
        )
    finally:
        scorer.stop.set()
        scorer.join()

    assert report["sent"] == 60
    assert report["errors"] == {"dead_letter:validation_error": 5}
    assert report["completed"] == 55 == scorer.decided
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["max"] < 15_000
    assert report["consumer_lag"]["samples"] >= 1
    assert report["consumer_lag"]["max"] is not None


async def test_transactions_without_a_decision_time_out(
    broker: EmbeddedBroker, topics: KafkaTopics, history_csv: Path
) -> None:
    workload = load_workload(history_csv, limit=20)
    config = RunConfig(plan=Plan(duration_s=0.25, drain_timeout_s=0.2), rate=40.0)
    report = await run_once(
        lambda recorder: KafkaTarget(broker.bootstrap_servers, recorder, topics),
        workload,
        body_stream(workload, "none"),
        config,
    )
    assert report["sent"] == 10
    assert report["errors"] == {"timeout": 10}
    assert report["consumer_lag"]["max"] is None  # the group never committed


def test_consumer_lag_is_end_offsets_minus_committed(
    broker: EmbeddedBroker, topics: KafkaTopics
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    sent = [producer.send(topics.transactions, value=b"{}", partition=i % 2) for i in range(7)]
    producer.flush()
    producer.close()
    acked_ends: dict[int, int] = {}
    for future in sent:
        metadata = future.get()
        acked_ends[metadata.partition] = max(
            acked_ends.get(metadata.partition, 0), metadata.offset + 1
        )
    group = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=topics.group_id)
    group.commit({TopicPartition(topics.transactions, 0): OffsetAndMetadata(1, "", -1)})
    group.commit({TopicPartition(topics.transactions, 1): OffsetAndMetadata(2, "", -1)})
    group.close()

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    ends = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    try:
        # Partition 0 holds 4 records (1 committed), partition 1 holds 3 (2 committed).
        lag = consumer_lag(admin, ends, topics.group_id, topics.transactions, acked_ends)
        assert lag == 3 + 1
        assert consumer_lag(admin, ends, "nobody", topics.transactions, acked_ends) is None
    finally:
        admin.close()
        ends.close()
