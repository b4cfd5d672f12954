"""Several `riskscore consume` processes in one consumer group on the shared backends
(Redis feature state, PostgreSQL audit store), and what they left behind.

The fault command (`consumer_faults`) and the scaling one (`consumer_scaling`) drive a
fleet; the tests drive one too. Each run names its payments with a prefix of its own, so
one database serves many runs: every count below is of that prefix only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from streaming.broker import ensure_topics
from streaming.config import Topics

# A group join takes about the session timeout on Tansu: short, so a killed member's
# partitions go to the others within seconds (kafka-python's minimum is 6 s with its
# default heartbeat).
SESSION_TIMEOUT_MS = 6000


def fresh_topics(bootstrap_servers: str, partitions: int) -> Topics:
    """Topics of their own for one run (created, ``partitions`` each)."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(
        transactions=f"tx-{suffix}",
        decisions=f"dec-{suffix}",
        dead_letters=f"dlq-{suffix}",
        labels=f"lab-{suffix}",
    )
    ensure_topics(bootstrap_servers, topics.all(), partitions)
    return topics


def renamed(payloads: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The payments with ids ``<prefix><n>``: a run's own, whatever ran before."""
    return [{**p, "transaction_id": f"{prefix}{n}"} for n, p in enumerate(payloads)]


def produce(bootstrap_servers: str, topic: str, payloads: list[dict[str, Any]]) -> None:
    """Publish keyed by customer, as `riskscore produce` does (one customer, one partition)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    for p in payloads:
        producer.send(topic, key=str(p["customer_id"]).encode(), value=json.dumps(p).encode())
    producer.flush()
    producer.close()


@dataclass
class Fleet:
    """The consumers of one run: started, killed and stopped by index."""

    bootstrap_servers: str
    topics: Topics
    feature_state_url: str
    audit_url: str
    data_dir: Path
    group: str = field(default_factory=lambda: f"fleet-{uuid.uuid4().hex[:8]}")
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "RISKSCORE_DATA_DIR": str(self.data_dir),
            "RISKSCORE_FEATURE_STATE_URL": self.feature_state_url,
            "RISKSCORE_AUDIT_URL": self.audit_url,
            "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "RISKSCORE_KAFKA_TRANSACTIONS_TOPIC": self.topics.transactions,
            "RISKSCORE_KAFKA_DECISIONS_TOPIC": self.topics.decisions,
            "RISKSCORE_KAFKA_DEAD_LETTER_TOPIC": self.topics.dead_letters,
            "RISKSCORE_KAFKA_LABELS_TOPIC": self.topics.labels,
            "RISKSCORE_KAFKA_GROUP_ID": self.group,
            "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "RISKSCORE_LOG_LEVEL": "WARNING",
        }

    def start(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "consume"],
            env=self.environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self, index: int) -> None:
        """SIGKILL: no batch finished, nothing committed, no goodbye to the group."""
        process = self.processes[index]
        process.kill()
        process.wait()

    def check_running(self) -> None:
        for index, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"consumer {index} exited on its own ({process.returncode})")

    def stop(self, timeout_s: float = 60.0) -> list[int]:
        """SIGTERM to all (each finishes and commits its batch); their exit codes."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        codes = []
        for process in self.processes.values():
            try:
                codes.append(process.wait(timeout_s))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes

    def members(self) -> int:
        """Members of the group once it is stable (each then holds its partitions)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        # Tansu answers the group's authorised operations with every bit set, which
        # kafka-python cannot name (ValueError); the operations are not needed here.
        admin._process_acl_operations = lambda described: described
        try:
            group = admin.describe_groups([self.group])[self.group]
        finally:
            admin.close()
        return len(group["members"]) if group["group_state"] == "Stable" else 0


class AuditCounts:
    """The run's rows in the PostgreSQL audit store, read on a connection of its own
    (connected again after the server restarted under it)."""

    def __init__(self, audit_url: str, prefix: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = audit_url
        self._db = psycopg.connect(audit_url, autocommit=True)
        self._like = prefix.replace("%", r"\%").replace("_", r"\_") + "%"
        self._last = 0

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, (self._like,)).fetchall()
        except self._psycopg.OperationalError:
            self._db.close()  # the server went away: one new connection, then the query
            self._db = self._psycopg.connect(self._url, autocommit=True)
            return self._db.execute(sql, (self._like,)).fetchall()

    def decided(self) -> int:
        """The run's stored payments; while the server is down, the last count read."""
        try:
            rows = self._rows("SELECT count(*) FROM decisions WHERE transaction_id LIKE %s")
        except self._psycopg.OperationalError:
            return self._last
        self._last = int(rows[0][0]) if rows else 0
        return self._last

    def ids(self) -> list[str]:
        """Every stored id of the run, one per row (a duplicate row would show twice)."""
        rows = self._rows("SELECT transaction_id FROM decisions WHERE transaction_id LIKE %s")
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()


class DeadLetters:
    """The dead-letter topic, read as it fills: transaction id → the error type its
    header names (a payment refused instead of decided is accounted for, not waited on)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        self.errors: dict[str, str] = {}

    def poll(self) -> int:
        # A zero timeout never completes a fetch: wait briefly for what is there.
        for batch in self._consumer.poll(timeout_ms=200).values():
            for record in batch:
                tid = json.loads(record.value).get("transaction_id", "?")
                self.errors[str(tid)] = dict(record.headers).get("error.type", b"").decode()
        return len(self.errors)

    def close(self) -> None:
        self._consumer.close()


def wait_decided(
    counts: AuditCounts,
    target: int,
    fleet: Fleet,
    deadline: float,
    poll_s: float = 0.05,
    dead: DeadLetters | None = None,
) -> float:
    """Until ``target`` of the run's payments are stored (or, with ``dead``, stored or
    dead-lettered); the monotonic time it held."""
    while counts.decided() + (dead.poll() if dead else 0) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"stuck at {counts.decided()} of {target} decisions")
        fleet.check_running()
        time.sleep(poll_s)  # the store's count is the condition; this is the poll interval
    return time.monotonic()


def wait_members(fleet: Fleet, count: int, deadline: float, poll_s: float = 0.2) -> None:
    """Until ``count`` consumers hold partitions of the group (each loads the model and
    joins first: tens of seconds on a busy machine)."""
    while fleet.members() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the group did not reach {count} members")
        fleet.check_running()
        time.sleep(poll_s)  # the group's membership is the condition; this is the poll


def published(
    bootstrap_servers: str, topic: str, expected_keys: int, wait_s: float
) -> dict[str, list[bytes]]:
    """The decisions topic read from the start: transaction id → every value published
    for it (a re-delivered payment may be published again; the values must be equal)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    out: dict[str, list[bytes]] = {}
    deadline = time.monotonic() + wait_s
    try:
        quiet = 0
        while time.monotonic() < deadline and (len(out) < expected_keys or quiet < 2):
            batches = consumer.poll(timeout_ms=500)
            quiet = 0 if batches else quiet + 1
            for batch in batches.values():
                for record in batch:
                    out.setdefault(record.key.decode(), []).append(record.value)
    finally:
        consumer.close()
    return out
