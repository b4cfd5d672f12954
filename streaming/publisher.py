"""Publishes transactions to the ``transactions`` topic, keyed by customer, at a set rate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from kafka import KafkaProducer


class PublishError(RuntimeError):
    """Some records were not acknowledged by the broker."""


def publish(
    bootstrap_servers: str,
    topic: str,
    payloads: Iterable[dict[str, object]],
    rate: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Send every payload (key: its customer id, so a customer's payments stay in order);
    at ``rate`` per second on a fixed schedule if given, else as fast as the broker takes
    them. Returns the number sent, all acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    sent = 0
    futures = []
    started = time.perf_counter()
    try:
        for payload in payloads:
            if rate:
                delay = started + sent / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing to the requested rate
            futures.append(
                producer.send(
                    topic,
                    key=str(payload["customer_id"]).encode(),
                    value=json.dumps(payload).encode(),
                )
            )
            sent += 1
            if progress is not None and sent % 1000 == 0:
                progress(1000)
        producer.flush()
        failed = [f for f in futures if f.failed()]
        if failed:
            raise PublishError(
                f"{len(failed)} of {sent} records were not acknowledged: {failed[0].exception}"
            )
    finally:
        producer.close()
    if progress is not None:
        progress(sent % 1000)
    return sent
