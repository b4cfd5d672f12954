"""Reads a topic for a person: every record as one JSON object (value parsed when it is JSON,
headers as text), what the topic holds now or, following, what arrives next.

No consumer group: reading commits nothing and takes no partition from the scoring
consumers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

POLL_MS = 200


class TopicNotFound(LookupError):
    """The broker has no such topic."""


def record_view(record: Any) -> dict[str, Any]:
    """One record as JSON-ready data: key and headers as text, the value as parsed JSON when
    it is JSON (a decision, a transaction) and as text otherwise (a malformed record in the
    dead-letter topic keeps its original bytes)."""
    value: Any = None
    if record.value is not None:
        text = record.value.decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or []},
        "value": value,
    }


def tail(
    bootstrap_servers: str,
    topic: str,
    *,
    last: int | None = None,
    follow: bool = False,
    stop: threading.Event | None = None,
) -> Generator[dict[str, Any]]:
    """The records of ``topic``, as :func:`record_view`: all it holds (or its ``last``
    ones, oldest first), then, with ``follow``, those that arrive until ``stop`` is set."""
    stop = stop or threading.Event()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicNotFound(topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends: dict[TopicPartition, int] = consumer.end_offsets(assigned)
        starts: dict[TopicPartition, int] = consumer.beginning_offsets(assigned)
        for tp in assigned:
            first = starts[tp] if last is None else max(starts[tp], ends[tp] - last)
            consumer.seek(tp, first)
        # What the topic holds now, merged across partitions in time order. A fetch
        # returns whole record batches, so records past the end offsets read at the start
        # may come too (and the embedded broker reports the end of a partition as one past
        # its last batch's first offset, short of the last record): all are kept, and the
        # ends serve only as the point where the topic has been read.
        held: list[Any] = []
        pending = {tp for tp in assigned if consumer.position(tp) < ends[tp]}
        while pending and not stop.is_set():
            for records in consumer.poll(timeout_ms=POLL_MS).values():
                held.extend(records)
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        held.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        for record in held if last is None else held[-last:]:
            yield record_view(record)
        while follow and not stop.is_set():
            for records in consumer.poll(timeout_ms=POLL_MS).values():
                for record in records:
                    yield record_view(record)
    finally:
        consumer.close()
