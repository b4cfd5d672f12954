"""A real Kafka-protocol broker (Tansu) for the streaming tests, and helpers around it."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from features.data import frame_from_pandas
from features.simulator import SimulationConfig, simulate
from service.app import build_scorer
from service.benchmarks.consumer_fleet import fresh_topics
from service.scorer import Scorer
from service.settings import Settings
from streaming.broker import EmbeddedBroker
from streaming.config import Topics

WAIT_S = 60.0


@pytest.fixture
def collect_leaked_sockets() -> Iterator[None]:
    """Collect at teardown what kafka-python (3.0) leaves to the garbage collector after a
    connection fails (sockets, selector keys), so that its warnings come out in the test
    that cut connections — where :data:`BROKER_FAULTS` expects them — and not in whichever
    test happens to run next."""
    yield
    gc.collect()


# For tests that cut broker connections on purpose.
BROKER_FAULTS = [
    pytest.mark.usefixtures("collect_leaked_sockets"),
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def broker_faults(test: Callable[..., None]) -> Callable[..., None]:
    """Marks one test with :data:`BROKER_FAULTS`."""
    for mark in BROKER_FAULTS:
        test = mark(test)
    return test


@pytest.fixture
def scorer_on_loop(tmp_path: Path) -> Iterator[tuple[Scorer, asyncio.AbstractEventLoop]]:
    """A real scorer whose event loop runs in a thread, as under `riskscore serve`."""
    scorer = build_scorer(Settings.of(data_dir=tmp_path / "var", kafka="off"))
    scorer.warm_start(from_store=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield scorer, loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    scorer.store.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(port=0) as running:
        yield running


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    return fresh_topics(broker.bootstrap_servers, partitions=2)


def payloads(n: int, customers: int = 50, seed: int = 9) -> list[dict[str, Any]]:
    """``n`` simulated payments in time order, as /score bodies."""
    days = 20
    while True:
        config = SimulationConfig(
            customers=customers,
            terminals=2 * customers,
            days=days,
            start=date(2025, 2, 1),
            seed=seed,
        )
        out = list(frame_from_pandas(simulate(config), source="simulated").payloads("k-"))
        if len(out) >= n:
            return out[:n]
        days *= 2


def produce(broker: EmbeddedBroker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def read_topic(
    broker: EmbeddedBroker,
    topic: str,
    expected: int,
    wait_s: float = WAIT_S,
    distinct_keys: bool = False,
) -> list[Any]:
    """Every record of ``topic``, read until ``expected`` arrived (or the deadline); with
    ``distinct_keys``, until that many different keys arrived (duplicates expected)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[Any] = []
    keys: set[bytes] = set()
    deadline = time.monotonic() + wait_s
    while (len(keys) if distinct_keys else len(records)) < expected:
        if time.monotonic() > deadline:
            break
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
            keys.update(r.key for r in batch)
    # One more short poll: more than expected would be a duplicate we must see.
    for batch in consumer.poll(timeout_ms=500).values():
        records.extend(batch)
    consumer.close()
    return records
