"""The Kafka path end to end on one machine: embedded broker, one consumer, real scorer.

1. Throughput: a backlog of transactions is published first, then one consumer drains it
   (decode → features → fast model → exact SHAP → durable audit → decision published and
   acknowledged → commit); reported with the time per step.
2. Latency: transactions published at a fixed rate; for each, the time from its send to
   its decision being readable on the ``decisions`` topic.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from tqdm import tqdm

from explain.audit.sqlite_store import SQLiteAuditStore
from features.replay import replay
from models.fast import ModelSlot
from models.registry import default_artifact_dir
from service.benchmarks.scorer_bench import bench_transactions
from service.scorer import Scorer
from service.stream_bridge import ScorerBridge
from streaming.broker import EmbeddedBroker, ensure_topics
from streaming.config import StreamConfig, Topics
from streaming.processor import StreamProcessor


def _publish(servers: str, topic: str, bodies: list[dict[str, Any]], rate: float | None) -> dict:
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=2)
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the arrival schedule
        sent_at[str(body["transaction_id"])] = time.perf_counter()
        producer.send(topic, key=str(body["customer_id"]).encode(), value=json.dumps(body).encode())
    producer.flush()
    producer.close()
    return sent_at


def measure(count: int = 30_000, rate: float = 5000.0, seconds: float = 10.0) -> dict[str, Any]:
    latency_n = int(rate * seconds)
    history, txs = bench_transactions(count + latency_n, seed=13)
    bodies = [json.loads(tx.model_dump_json()) for tx in txs]
    models = ModelSlot()
    models.swap(default_artifact_dir())
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(port=0) as broker:
        store = SQLiteAuditStore(Path(tmp) / "audit.sqlite3")
        scorer = Scorer(models, store)
        replay(history, scorer.engine)
        scorer.warm_start(from_store=False)
        loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
        loop_thread.start()
        topics = Topics()
        ensure_topics(broker.bootstrap_servers, topics.all(), partitions=4)
        bridge = ScorerBridge(scorer, loop)
        processor = StreamProcessor(
            StreamConfig(broker.bootstrap_servers, topics, session_timeout_ms=6000),
            bridge.score,
            bridge.labels,
        )
        _publish(broker.bootstrap_servers, topics.transactions, bodies[:count], None)
        stop = threading.Event()
        worker = threading.Thread(target=processor.run, args=(stop,), daemon=True)
        with tqdm(total=count, desc="draining backlog", unit="tx") as bar:
            worker.start()
            first = None
            while processor.stats.decisions < count:
                if processor.stats.decisions and first is None:
                    first = (time.perf_counter(), processor.stats.decisions)
                bar.n = processor.stats.decisions
                bar.refresh()
                time.sleep(0.05)  # progress display only; the loop ends on the count
            drained = time.perf_counter()
        s = processor.stats
        assert first is not None
        throughput = (count - first[1]) / (drained - first[0])
        steps = {
            "decode": s.decode_s,
            "score (features, model, SHAP, durable audit)": s.score_s,
            "publish (send, broker ack)": s.publish_s,
            "commit": s.commit_s,
        }
        latencies = _latency_run(broker, topics, bodies[count:], rate)
        stop.set()
        worker.join(30)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(10)
        store.close()
    ms = np.asarray(latencies) * 1000
    return {
        "backlog": count,
        "throughput_tx_per_s": throughput,
        "step_us_per_tx": {k: v / s.decisions * 1e6 for k, v in steps.items()},
        "latency_rate_per_s": rate,
        "latency_n": int(ms.size),
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "latency_max_ms": float(ms.max()),
    }


def _latency_run(
    broker: EmbeddedBroker, topics: Topics, bodies: list[dict[str, Any]], rate: float
) -> list[float]:
    reader = KafkaConsumer(
        topics.decisions, bootstrap_servers=broker.bootstrap_servers, group_id=None
    )
    deadline = time.monotonic() + 30
    while not reader.assignment() and time.monotonic() < deadline:
        reader.poll(timeout_ms=100)  # assignment arrives with the first polls
    reader.seek_to_end()
    received: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for batch in reader.poll(timeout_ms=100).values():
                now = time.perf_counter()
                for record in batch:
                    received.setdefault(record.key.decode(), now)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    sent_at = _publish(broker.bootstrap_servers, topics.transactions, bodies, rate)
    deadline = time.monotonic() + 60
    while len(received) < len(sent_at) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the last decisions, bounded
    done.set()
    thread.join(10)
    reader.close()
    return [received[k] - t for k, t in sent_at.items() if k in received]
