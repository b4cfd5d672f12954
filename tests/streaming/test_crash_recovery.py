"""`riskscore consume` killed with SIGKILL again and again: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from kafka import KafkaAdminClient
from kafka.structs import OffsetAndMetadata, TopicPartition

from streaming.broker import EmbeddedBroker
from streaming.config import Topics
from tests.streaming.conftest import payloads, produce, read_topic

TOTAL = 20_000
_NONE = OffsetAndMetadata(0, "", -1)  # a partition with no commit
KILLS = 5
DEADLINE_S = 240.0


def _decided(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        try:
            return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])
        except sqlite3.OperationalError:
            return 0  # the schema is being created


def _consumer(data_dir: Path, broker: EmbeddedBroker, topics: Topics) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RISKSCORE_DATA_DIR": str(data_dir),
        "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "RISKSCORE_KAFKA_TRANSACTIONS_TOPIC": topics.transactions,
        "RISKSCORE_KAFKA_DECISIONS_TOPIC": topics.decisions,
        "RISKSCORE_KAFKA_DEAD_LETTER_TOPIC": topics.dead_letters,
        "RISKSCORE_KAFKA_LABELS_TOPIC": topics.labels,
        "RISKSCORE_KAFKA_GROUP_ID": f"crash-{topics.transactions}",
        "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RISKSCORE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "consume"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(store: Path, count: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    # The condition waited on is the store's decision count; the loop ends when it holds.
    while _decided(store) < count:
        assert time.monotonic() < deadline, f"stuck below {count} decisions"
        assert process.poll() is None, "the consumer exited on its own"
        time.sleep(0.05)


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    sent = payloads(TOTAL, customers=3000, seed=21)
    records = [(p["customer_id"].encode(), json.dumps(p).encode()) for p in sent]
    # 1% malformed, spread through the stream: each must reach the dead-letter topic.
    bad = [
        (b"bad", json.dumps({"transaction_id": f"bad-{i}", "amount": -1}).encode())
        for i in range(TOTAL // 100)
    ]
    for i, record in enumerate(bad):
        records.insert(i * 101 + 50, record)
    produce(broker, topics.transactions, records)
    store = tmp_path / "var" / "audit.sqlite3"
    deadline = time.monotonic() + DEADLINE_S
    rng = np.random.default_rng(7)
    kill_points = np.sort(rng.choice(np.arange(500, TOTAL - 500), KILLS, replace=False))
    for point in kill_points.tolist():
        process = _consumer(tmp_path / "var", broker, topics)
        _wait_for(store, point, process, deadline)
        process.send_signal(signal.SIGKILL)
        process.wait()
    process = _consumer(tmp_path / "var", broker, topics)
    try:
        _wait_for(store, TOTAL, process, deadline)
        decisions = read_topic(broker, topics.decisions, TOTAL, distinct_keys=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0

    ids = {p["transaction_id"] for p in sent}
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        stored = [row[0] for row in db.execute("SELECT transaction_id FROM decisions")]
    assert len(stored) == len(set(stored)) == TOTAL  # no duplicate audit rows
    assert set(stored) == ids  # no transaction without a decision
    published: dict[str, set[bytes]] = {}
    for record in decisions:
        published.setdefault(record.key.decode(), set()).add(record.value)
    assert set(published) == ids
    # Re-deliveries after a kill re-publish the recorded decision, byte for byte.
    assert all(len(values) == 1 for values in published.values())
    dead = read_topic(broker, topics.dead_letters, len(bad))
    assert {r.value for r in dead} == {value for _, value in bad}
    assert all(dict(r.headers)["error.type"] == b"validation_error" for r in dead)


def test_sigterm_commits_nothing_undecided(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    sent = payloads(5000, customers=1000, seed=22)
    produce(
        broker,
        topics.transactions,
        [(p["customer_id"].encode(), json.dumps(p).encode()) for p in sent],
    )
    store = tmp_path / "var" / "audit.sqlite3"
    process = _consumer(tmp_path / "var", broker, topics)
    _wait_for(store, 1500, process, time.monotonic() + DEADLINE_S)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    group = f"crash-{topics.transactions}"
    committed = admin.list_group_offsets(group)[group]
    admin.close()
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        decided = {row[0] for row in db.execute("SELECT transaction_id FROM decisions")}
    records = read_topic(broker, topics.transactions, len(sent))
    below_commit = [
        json.loads(r.value)["transaction_id"]
        for r in records
        if r.offset < committed.get(TopicPartition(r.topic, r.partition), _NONE).offset
    ]
    assert below_commit, "the consumer committed nothing before stopping"
    assert set(below_commit) <= decided
