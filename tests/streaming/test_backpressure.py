"""Backpressure on the Kafka path: a busy scorer pauses fetching; nothing is dropped.

Against the real broker. The scorer's queue depth is a number the test sets, so "busy" is
decided by the test, not by racing a load: while it is deep the consumer keeps polling (its
group membership) but takes nothing; once it drains, every record is scored exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from features.schema import Transaction
from streaming.backpressure import DepthGate
from streaming.broker import EmbeddedBroker
from streaming.codec import RecordError
from streaming.config import StreamConfig, Topics
from streaming.processor import EncodedDecision, StreamProcessor
from tests.streaming.conftest import payloads, produce, read_topic

WAIT_S = 60.0


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)  # polling a condition, bounded by the deadline


def test_a_deep_queue_pauses_fetching_and_nothing_is_dropped(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    depth = [5000]  # the scorer's queue: deep from the start
    scored: list[str] = []

    def score(txs: list[Transaction]) -> list[EncodedDecision | RecordError]:
        scored.extend(tx.transaction_id for tx in txs)
        return [EncodedDecision(tx.transaction_id, b"{}") for tx in txs]

    config = StreamConfig(
        bootstrap_servers=broker.bootstrap_servers,
        topics=topics,
        group_id=f"g-{topics.transactions}",
        session_timeout_ms=6000,
        max_batch=50,
    )
    processor = StreamProcessor(config, score, busy=DepthGate(lambda: depth[0], high=1000))
    bodies = payloads(300)
    produce(broker, topics.transactions, [(b"c", json.dumps(p).encode()) for p in bodies])
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # Many polls with 300 records waiting and partitions assigned: none was taken.
        _wait_for(lambda: processor.stats.paused_polls >= 20, "polls while paused")
        assert processor.paused and processor.stats.pauses == 1
        assert scored == []
        depth[0] = 600  # below the high mark, above the low one: still paused
        before = processor.stats.paused_polls
        _wait_for(lambda: processor.stats.paused_polls >= before + 5, "more polls")
        assert scored == []
        depth[0] = 0  # drained
        _wait_for(lambda: len(scored) >= len(bodies), "every record scored")
        decisions = read_topic(broker, topics.decisions, len(bodies))
    finally:
        stop.set()
        thread.join(30)
    assert not processor.paused
    assert sorted(scored) == sorted(p["transaction_id"] for p in bodies)  # once each
    assert len(decisions) == len(bodies)
    assert processor.stats.dead_letters == 0 and processor.error is None


def test_the_gate_has_two_marks() -> None:
    depth = [0]
    gate = DepthGate(lambda: depth[0], high=100)
    seen = []
    for value in (50, 100, 99, 51, 50, 99, 100):
        depth[0] = value
        seen.append(gate())
    assert seen == [False, True, True, True, False, False, True]
