"""The Kafka path end to end on one machine: embedded broker, `riskscore consume` in its own
process (as deployed), the shipped model and a real SQLite store.

1. Throughput: a backlog of transactions is published first, then the consumer drains it
   (decode → features → fast model → exact SHAP → durable audit → decision published and
   acknowledged → commit); the consumer's own totals give the time per step.
2. Latency: transactions published at a fixed rate; for each, the time from its send to
   its decision being readable on the ``decisions`` topic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from tqdm import tqdm

from features.data import frame_from_pandas
from features.simulator import SimulationConfig, simulate
from streaming.broker import EmbeddedBroker, ensure_topics
from streaming.config import Topics


def _bodies(count: int, seed: int) -> list[dict[str, Any]]:
    days = 10
    while True:
        config = SimulationConfig(
            customers=5000, terminals=10000, days=days, start=date(2025, 3, 1), seed=seed
        )
        out = list(frame_from_pandas(simulate(config, progress=True), source="s").payloads("b-"))
        if len(out) >= count:
            return out[:count]
        days *= 2


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


class _DecisionReader:
    """Reads the decisions topic from its end, noting when each key first appears."""

    def __init__(self, servers: str, topic: str) -> None:
        self._consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=None)
        deadline = time.monotonic() + 30
        while not self._consumer.assignment() and time.monotonic() < deadline:
            self._consumer.poll(timeout_ms=100)  # assignment arrives with the first polls
        self._consumer.seek_to_end()
        self.seen: dict[str, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            for batch in self._consumer.poll(timeout_ms=100).values():
                now = time.perf_counter()
                for record in batch:
                    self.seen.setdefault(record.key.decode(), now)

    def wait_for(self, keys: set[str] | dict[str, float], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with tqdm(total=len(keys), desc="decisions", unit="tx") as bar:
            while time.monotonic() < deadline:
                done = sum(1 for k in keys if k in self.seen)
                bar.n = done
                bar.refresh()
                if done == len(keys):
                    return
                time.sleep(0.1)  # progress display; the loop ends on the count

    def close(self) -> None:
        self._done.set()
        self._thread.join(10)
        self._consumer.close()


def measure(count: int = 30_000, rate: float = 5000.0, seconds: float = 10.0) -> dict[str, Any]:
    latency_n = int(rate * seconds)
    bodies = _bodies(count + latency_n, seed=13)
    topics = Topics()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(port=0) as broker:
        servers = broker.bootstrap_servers
        ensure_topics(servers, topics.all(), partitions=4)
        reader = _DecisionReader(servers, topics.decisions)
        _publish(servers, topics.transactions, bodies[:count], None)
        env = {
            **os.environ,
            "RISKSCORE_DATA_DIR": str(Path(tmp) / "var"),
            "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "RISKSCORE_LOG_LEVEL": "WARNING",
        }
        consumer = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "consume"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            backlog = {str(b["transaction_id"]) for b in bodies[:count]}
            reader.wait_for(backlog, timeout=600)
            times = sorted(reader.seen[k] for k in backlog if k in reader.seen)
            # From the first decision to the last: start-up and group join excluded.
            throughput = (len(times) - 1) / (times[-1] - times[0])
            sent_at = _publish(servers, topics.transactions, bodies[count:], rate)
            reader.wait_for(sent_at, timeout=120)
        finally:
            consumer.send_signal(signal.SIGTERM)
            output, _ = consumer.communicate(timeout=60)
            reader.close()
    summary = json.loads(output.strip().splitlines()[-1])["stream_summary"]
    latencies = np.asarray([reader.seen[k] - t for k, t in sent_at.items() if k in reader.seen])
    ms = latencies * 1000
    decided = max(summary["decisions"], 1)
    steps = {
        "decode": summary["decode_s"],
        "score (features, model, SHAP, durable audit)": summary["score_s"],
        "publish (send, broker ack)": summary["publish_s"],
        "commit": summary["commit_s"],
    }
    return {
        "backlog": count,
        "throughput_tx_per_s": throughput,
        "step_us_per_tx": {k: v / decided * 1e6 for k, v in steps.items()},
        "latency_rate_per_s": rate,
        "latency_n": int(ms.size),
        "latency_missing": len(sent_at) - int(ms.size),
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "latency_max_ms": float(ms.max()),
        "consumer_batches": summary["batches"],
    }
