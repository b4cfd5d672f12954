"""Kafka as the target: publish to ``transactions``, time each decision on ``decisions``.

Transactions are keyed by customer id (as producers must, to keep a customer's payments in
order); decisions come back keyed by transaction id and are matched to the send by that
key. A transaction the consumer rejects lands on the dead-letter topic instead and counts
as an error named by its ``error.type`` header. Consumer lag — how far the scoring group's
committed offsets trail the end of ``transactions`` — is sampled once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from loadtest.recorder import Recorder

POLL_MS = 100


class KafkaTargetError(RuntimeError):
    """The broker cannot be reached, or a topic is missing."""


@dataclass(frozen=True)
class KafkaTopics:
    transactions: str = "transactions"
    decisions: str = "decisions"
    dead_letters: str = "transactions.dlq"
    group_id: str = "riskscore"  # the scoring consumers' group, whose lag is sampled


class KafkaTarget:
    """Open-loop producer plus a decision reader on its own thread."""

    def __init__(self, bootstrap_servers: str, recorder: Recorder, topics: KafkaTopics) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.recorder = recorder
        self.topics = topics
        self.lag_samples: list[tuple[float, int]] = []  # (perf_counter time, total lag)
        self._inflight: dict[str, float] = {}
        self._acked_ends: dict[int, int] = {}  # partition -> one past our highest acked offset
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._producer: KafkaProducer | None = None

    def start(self) -> None:
        """Connect, and position the readers at the current ends (blocking; call first)."""
        self._loop = asyncio.get_running_loop()
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers, acks=1, linger_ms=1
            )
            reader = KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                # The broker would otherwise hold a fetch up to 500 ms, adding to latency.
                fetch_max_wait_ms=5,
            )
            partitions = [
                TopicPartition(topic, p)
                for topic in (self.topics.decisions, self.topics.dead_letters)
                for p in sorted(reader.partitions_for_topic(topic) or ())
            ]
            if not any(tp.topic == self.topics.decisions for tp in partitions):
                reader.close()
                raise KafkaTargetError(f"topic {self.topics.decisions!r} does not exist")
            reader.assign(partitions)
            reader.seek_to_end()
            for tp in partitions:
                reader.position(tp)  # resolve now: only decisions after this point count
        except KafkaError as exc:
            self.close()
            raise KafkaTargetError(f"cannot use {self.bootstrap_servers}: {exc}") from exc
        self._threads = [
            threading.Thread(target=self._read, args=(reader,), name="loadtest-decisions"),
            threading.Thread(target=self._sample_lag, name="loadtest-lag"),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, body: dict[str, object], intended: float) -> None:
        assert self._producer is not None and self._loop is not None
        transaction_id = str(body["transaction_id"])
        self._inflight[transaction_id] = intended
        future = self._producer.send(
            self.topics.transactions,
            key=str(body["customer_id"]).encode(),
            value=json.dumps(body, separators=(",", ":")).encode(),
        )
        loop = self._loop
        future.add_callback(self._acked)
        future.add_errback(
            lambda exc: loop.call_soon_threadsafe(
                self._outcome, transaction_id, type(exc).__name__, time.perf_counter()
            )
        )

    def _acked(self, metadata: object) -> None:
        # The producer's I/O thread; one dict update under the GIL.
        partition, offset = getattr(metadata, "partition", 0), getattr(metadata, "offset", -1)
        if offset + 1 > self._acked_ends.get(partition, 0):
            self._acked_ends[partition] = offset + 1

    def flush(self) -> None:
        """Block until every transaction submitted so far is acknowledged by the broker
        (a backlog published before its consumer starts)."""
        assert self._producer is not None
        self._producer.flush()

    def abandon(self, now: float) -> None:
        for intended in self._inflight.values():
            self.recorder.on_abandoned(intended, now)
        self._inflight.clear()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._producer is not None:
            self._producer.close(timeout=5)

    def _outcome(self, transaction_id: str, error: str | None, now: float) -> None:
        intended = self._inflight.pop(transaction_id, None)
        # Unknown ids: another client's decisions, or a re-published one already counted.
        if intended is not None:
            self.recorder.on_done(intended, error, now)

    def _read(self, reader: KafkaConsumer) -> None:
        assert self._loop is not None
        try:
            while not self._stop.is_set():
                for tp, records in reader.poll(timeout_ms=POLL_MS).items():
                    now = time.perf_counter()
                    for record in records:
                        found = self._decoded(tp.topic, record)
                        if found is not None:
                            self._loop.call_soon_threadsafe(self._outcome, *found, now)
        finally:
            reader.close()

    def _decoded(self, topic: str, record: object) -> tuple[str, str | None] | None:
        if topic == self.topics.decisions:
            key = getattr(record, "key", None)
            return (key.decode(), None) if key else None
        # A dead letter carries the original bytes; its id is inside.
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(getattr(record, "value", b""))
            headers = dict(getattr(record, "headers", None) or ())
            kind = headers.get("error.type", b"unknown").decode()
            return str(body["transaction_id"]), f"dead_letter:{kind}"
        return None

    def _sample_lag(self) -> None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            ends = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None)
        except KafkaError:
            return  # lag is a bonus; the run itself goes on
        try:
            while not self._stop.wait(1.0):
                lag = consumer_lag(
                    admin,
                    ends,
                    self.topics.group_id,
                    self.topics.transactions,
                    dict(self._acked_ends),
                )
                if lag is not None:
                    self.lag_samples.append((time.perf_counter(), lag))
        finally:
            admin.close()
            ends.close()


def consumer_lag(
    admin: KafkaAdminClient,
    ends: KafkaConsumer,
    group_id: str,
    topic: str,
    acked_ends: dict[int, int] | None = None,
) -> int | None:
    """Records on ``topic`` not yet committed by ``group_id``; None if it committed nothing.

    The end of a partition is the larger of the broker's answer and ``acked_ends`` (one past
    the highest offset the broker acknowledged to our producer): Tansu's ListOffsets
    answers one past the *first* offset of the last batch, short of the true end."""
    try:
        committed = {
            tp: meta.offset
            # kafka-python 3 names it list_group_offsets (list_consumer_group_offsets before).
            for tp, meta in admin.list_group_offsets({group_id: None}).get(group_id, {}).items()
            if tp.topic == topic and meta.offset >= 0
        }
        if not committed:
            return None
        end_offsets = ends.end_offsets(list(committed))
    except KafkaError:
        return None
    known = acked_ends or {}
    return sum(
        max(0, max(end_offsets[tp], known.get(tp.partition, 0)) - offset)
        for tp, offset in committed.items()
    )
