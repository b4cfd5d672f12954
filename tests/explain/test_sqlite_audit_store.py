"""The SQLite audit store keeps every decision durable, immutable and in event-time order."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import numpy as np
import pytest

from explain.audit.sqlite_schema import SCHEMA_VERSION
from explain.audit.sqlite_store import WRITER_THREAD_NAME, SQLiteAuditStore
from explain.audit.store import AuditStoreError, DecisionQuery, RebuildEvent
from explain.decision import Decision, Reasons, encode_json, to_record
from explain.records import Action, LabelRecord
from explain.schema import ExplanationSchema
from features.schema import Transaction, datetime_to_epoch_ms

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BASE_MS = datetime_to_epoch_ms(BASE)


SCHEMA = ExplanationSchema("tree_shap", ("amount", "hour"), ("the amount", "the hour"))


def make_record(
    transaction_id: str,
    *,
    minutes: float = 0.0,
    customer: str = "cust-1",
    action: Action = "approve",
    score: float = 0.1,
    tz: timezone = UTC,
) -> Decision:
    event = BASE + timedelta(minutes=minutes)
    tx = Transaction(
        transaction_id=transaction_id,
        timestamp=event.astimezone(tz),
        customer_id=customer,
        terminal_id="term-1",
        amount=42.5,
    )
    reasons = encode_json(
        [
            {
                "code": "amount",
                "value": 42.5,
                "contribution": 0.3,
                "direction": "raises",
                "text": "the amount: 42.50 (raises risk)",
            }
        ]
    )
    return Decision(
        transaction=tx,
        request_sha256=hashlib.sha256(transaction_id.encode()).hexdigest(),
        decided_at=event + timedelta(milliseconds=3, microseconds=17),
        score=score,
        action=action,
        stage="fast",
        fallback=False,
        fallback_reason=None,
        model_version="fast-test-1",
        reasons=Reasons((0,), ("42.50",), reasons),
        schema=SCHEMA,
        base_value=-2.0,
        raw_score=-1.7,
        values=np.array([42.5, 13.0]),
        contributions=np.array([0.3, 0.0]),
        review_threshold=0.5,
        decline_threshold=0.9,
        timings_ms={"features": 0.1, "model": 0.2},
        latency_ms=0.4,
    )


def make_label(transaction_id: str, is_fraud: bool, received_minutes: float) -> LabelRecord:
    return LabelRecord(
        transaction_id=transaction_id,
        is_fraud=is_fraud,
        received_at=BASE + timedelta(days=1, minutes=received_minutes),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "audit.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteAuditStore]:
    with SQLiteAuditStore(db) as opened:
        yield opened


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def write_all(store: SQLiteAuditStore, *records: Decision) -> list[bool]:
    futures = [store.submit(r) for r in records]
    return [f.result(timeout=10) for f in futures]


def test_record_is_readable_once_durable_and_after_reopening(db: Path) -> None:
    record = make_record("tx-1", tz=timezone(timedelta(hours=2)))
    with SQLiteAuditStore(db) as store:
        assert store.path == db
        assert threading.current_thread().name != WRITER_THREAD_NAME
        assert store.submit(record).result(timeout=10) is True
        assert store.get("tx-1") == to_record(record)
        assert store.get("tx-unknown") is None
    with SQLiteAuditStore(db) as reopened:
        assert reopened.get("tx-1") == to_record(record)
        assert reopened.counts() == {"decisions": 1, "labels": 0}


def test_writer_is_the_named_daemon_thread(store: SQLiteAuditStore) -> None:
    writers = [t for t in threading.enumerate() if t.name == WRITER_THREAD_NAME]
    assert writers
    assert all(t.daemon for t in writers)


def test_duplicate_transaction_id_resolves_false_and_original_stands(
    store: SQLiteAuditStore,
) -> None:
    original = make_record("tx-1", action="approve", score=0.1)
    retry = make_record("tx-1", action="decline", score=0.95)
    assert write_all(store, original) == [True]
    assert write_all(store, retry) == [False]
    # Both in one batch: the first wins, the second is told so.
    assert write_all(store, make_record("tx-2"), make_record("tx-2", score=0.7)) == [True, False]
    assert store.get("tx-1") == to_record(original)
    assert store.counts()["decisions"] == 2


def test_concurrent_submits_are_all_written_in_fewer_commits(db: Path) -> None:
    threads, per_thread = 8, 50
    start = threading.Barrier(threads)
    results: list[list[bool]] = [[] for _ in range(threads)]
    store = SQLiteAuditStore(db, commit_window_ms=20)

    def submitter(index: int) -> None:
        start.wait()
        futures = [store.submit(make_record(f"tx-{index}-{i}")) for i in range(per_thread)]
        results[index] = [f.result(timeout=10) for f in futures]

    with store:
        workers = [threading.Thread(target=submitter, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert all(r == [True] * per_thread for r in results)
        assert store.counts()["decisions"] == threads * per_thread
        stats = store.stats
        assert stats.records == threads * per_thread
        assert 1 <= stats.commits < threads * per_thread
        assert stats.failed_batches == 0


def test_batches_never_exceed_max_batch(db: Path) -> None:
    # A long window: only max_batch (and the flush) can close a batch.
    with SQLiteAuditStore(db, commit_window_ms=60_000, max_batch=4) as store:
        futures = [store.submit(make_record(f"tx-{i}")) for i in range(10)]
        store.flush(timeout=10)
        assert all(f.done() and f.result() for f in futures)
        assert store.stats.commits == 3
        assert store.stats.records == 10


def test_history_cannot_be_rewritten_with_raw_sql(db: Path) -> None:
    record = make_record("tx-1", score=0.2)
    with SQLiteAuditStore(db) as store:
        write_all(store, record)
        store.submit_label(make_label("tx-1", False, 0)).result(timeout=10)
    statements = [
        "UPDATE decisions SET score = 0.9 WHERE transaction_id = 'tx-1'",
        "DELETE FROM decisions WHERE transaction_id = 'tx-1'",
        "DELETE FROM decisions",
        "INSERT OR REPLACE INTO decisions SELECT * FROM decisions",
        "UPDATE labels SET is_fraud = 1",
        "DELETE FROM labels",
        "REPLACE INTO labels SELECT * FROM labels",
    ]
    with raw(db) as conn:
        for statement in statements:
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                conn.execute(statement)
    with SQLiteAuditStore(db) as store:
        assert store.get("tx-1") == to_record(record)
        assert store.labels("tx-1") == [make_label("tx-1", False, 0)]


def test_query_filters_orders_and_limits(store: SQLiteAuditStore) -> None:
    write_all(
        store,
        make_record("late", minutes=30, action="decline", customer="c2"),
        make_record("early", minutes=0),
        make_record("tie-b", minutes=10, action="review"),
        make_record("tie-a", minutes=10, action="decline"),
        make_record("boundary", minutes=20, customer="c2"),
    )

    def ids(query: DecisionQuery) -> list[str]:
        return [r.transaction_id for r in store.query(query)]

    everything = ["early", "tie-b", "tie-a", "boundary", "late"]  # ties in decision order
    assert ids(DecisionQuery()) == everything
    start, end = BASE + timedelta(minutes=10), BASE + timedelta(minutes=20)
    # start inclusive, end exclusive; a naive time is UTC
    assert ids(DecisionQuery(start=start, end=end)) == ["tie-b", "tie-a"]
    assert ids(DecisionQuery(start=start.replace(tzinfo=None))) == everything[1:]
    assert ids(DecisionQuery(action="decline")) == ["tie-a", "late"]
    assert ids(DecisionQuery(customer_id="c2")) == ["boundary", "late"]
    assert ids(DecisionQuery(customer_id="c2", action="decline", start=start)) == ["late"]
    assert ids(DecisionQuery(limit=2)) == ["early", "tie-b"]
    assert ids(DecisionQuery(limit=0)) == []
    assert ids(DecisionQuery(customer_id="nobody")) == []


def test_labels_append_and_latest_label_wins(store: SQLiteAuditStore) -> None:
    write_all(store, make_record("old", minutes=-60), make_record("a", minutes=1))
    write_all(store, make_record("b", minutes=2))
    labels = [
        make_label("a", False, received_minutes=0),
        make_label("a", True, received_minutes=5),
        make_label("b", True, received_minutes=3),
        # Arrives last but was received earlier: it does not override b's later label.
        make_label("b", False, received_minutes=1),
        make_label("old", True, received_minutes=0),
        make_label("undecided", True, received_minutes=0),
    ]
    for future in [store.submit_label(label) for label in labels]:
        assert future.result(timeout=10) is None
    assert store.labels("a") == labels[:2]
    assert store.labels("b") == [labels[3], labels[2]]
    assert store.labels("nothing") == []
    assert list(store.latest_labels(BASE_MS)) == [("a", True), ("b", True)]
    assert list(store.latest_labels(BASE_MS - 3_600_000)) == [
        ("old", True),
        ("a", True),
        ("b", True),
    ]
    assert store.counts() == {"decisions": 3, "labels": 6}


def test_rebuild_events_in_event_time_order_from_since(store: SQLiteAuditStore) -> None:
    assert store.latest_event_ms() is None
    assert list(store.rebuild_events(0)) == []
    plus_two = timezone(timedelta(hours=2))
    write_all(
        store,
        make_record("third", minutes=2),
        make_record("first", minutes=0, tz=plus_two),
        make_record("second-x", minutes=1),
        make_record("second-y", minutes=1),
    )
    events = list(store.rebuild_events(BASE_MS))
    assert [e.transaction_id for e in events] == ["first", "second-x", "second-y", "third"]
    assert events[0] == RebuildEvent(
        transaction_id="first",
        customer_id="cust-1",
        terminal_id="term-1",
        epoch_ms=BASE_MS,
        local_epoch_ms=BASE_MS + 2 * 3_600_000,
        amount=42.5,
    )
    assert [e.transaction_id for e in store.rebuild_events(BASE_MS + 60_000)] == [
        "second-x",
        "second-y",
        "third",
    ]
    assert store.latest_event_ms() == BASE_MS + 120_000
    # A replay abandoned half-way releases its cursor and leaves the store usable.
    partial = store.rebuild_events(0)
    assert isinstance(partial, Generator)
    assert next(partial).transaction_id == "first"
    partial.close()
    assert store.counts()["decisions"] == 4


def test_close_flushes_pending_is_idempotent_and_refuses_more(db: Path) -> None:
    store = SQLiteAuditStore(db, commit_window_ms=50)
    futures = [store.submit(make_record(f"tx-{i}")) for i in range(50)]
    label = store.submit_label(make_label("tx-0", True, 0))
    store.close(timeout=10)
    assert all(f.done() and f.result() is True for f in futures)
    assert label.done()
    store.close()
    store.flush(timeout=1)  # nothing left to wait for
    with pytest.raises(AuditStoreError, match="closed"):
        store.submit(make_record("tx-late"))
    with pytest.raises(AuditStoreError, match="closed"):
        store.submit_label(make_label("tx-0", False, 1))
    with pytest.raises(AuditStoreError, match="closed"):
        store.get("tx-0")
    with pytest.raises(AuditStoreError, match="closed"):
        store.check_writable()
    with SQLiteAuditStore(db) as reopened:
        assert reopened.counts() == {"decisions": 50, "labels": 1}


def test_flush_waits_for_everything_submitted_before(db: Path) -> None:
    with SQLiteAuditStore(db, commit_window_ms=60_000) as store:
        futures = [store.submit(make_record(f"tx-{i}")) for i in range(5)]
        store.flush(timeout=10)
        assert all(f.done() for f in futures)
        with raw(db) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone() == (5,)


def test_newer_schema_version_is_refused(db: Path) -> None:
    SQLiteAuditStore(db).close()
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(AuditStoreError, match="newer"):
        SQLiteAuditStore(db)


def test_empty_older_database_is_migrated(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    with SQLiteAuditStore(db) as store:
        write_all(store, make_record("tx-1"))
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_check_writable_passes_on_a_healthy_store(store: SQLiteAuditStore) -> None:
    store.check_writable()


def test_check_writable_reports_a_lock_held_elsewhere(db: Path) -> None:
    with SQLiteAuditStore(db, busy_timeout_ms=50) as store, raw(db) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(AuditStoreError, match="not writable"):
            store.check_writable()
        other.execute("ROLLBACK")
        store.check_writable()


def test_check_writable_reports_a_removed_file(db: Path) -> None:
    with SQLiteAuditStore(db) as store:
        db.unlink()
        with pytest.raises(AuditStoreError, match="not writable"):
            store.check_writable()
    assert not db.exists()  # the check did not create an empty database in its place


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_read_only_file_fails_check_writable_and_writes(db: Path) -> None:
    SQLiteAuditStore(db).close()
    db.chmod(0o444)
    try:
        with SQLiteAuditStore(db) as store:
            assert store.counts() == {"decisions": 0, "labels": 0}  # still readable
            with pytest.raises(AuditStoreError, match=r"not writable.*readonly"):
                store.check_writable()
            with pytest.raises(AuditStoreError, match="readonly"):
                store.submit(make_record("tx-1")).result(timeout=10)
    finally:
        db.chmod(0o644)


def test_a_record_breaking_a_constraint_fails_alone(db: Path) -> None:
    with SQLiteAuditStore(db, commit_window_ms=60_000) as store:
        # Nothing validates a decision struct; the table's CHECK still refuses the score.
        impossible = msgspec.structs.replace(make_record("tx-bad"), score=2.0)
        good = store.submit(make_record("tx-good"))
        bad = store.submit(impossible)
        after = store.submit(make_record("tx-after"))
        store.flush(timeout=10)  # the flush closes the batch holding all three
        with pytest.raises(AuditStoreError, match="CHECK constraint"):
            bad.result(timeout=0)
        # Its batch neighbours were written one by one instead.
        assert good.result(timeout=0) is True and after.result(timeout=0) is True
        assert store.get("tx-good") is not None and store.get("tx-bad") is None
        assert store.stats.failed_batches == 2  # the group, then the bad record alone
        later = store.submit(make_record("tx-later"))
        store.flush(timeout=10)
        assert later.result(timeout=0) is True
        assert store.counts()["decisions"] == 3


def test_write_blocked_by_another_writer_fails_then_recovers(db: Path) -> None:
    with SQLiteAuditStore(db, busy_timeout_ms=50) as store, raw(db) as other:
        other.execute("BEGIN IMMEDIATE")
        blocked = store.submit(make_record("tx-1"))
        with pytest.raises(AuditStoreError, match="locked"):
            blocked.result(timeout=10)
        other.execute("ROLLBACK")
        assert write_all(store, make_record("tx-1")) == [True]


def test_cancelled_future_does_not_withdraw_its_record(db: Path) -> None:
    with SQLiteAuditStore(db, commit_window_ms=60_000) as store:
        first = store.submit(make_record("tx-0"))
        # Futures are claimed only when their batch closes (here: at the flush).
        cancelled = store.submit(make_record("tx-1"))
        assert cancelled.cancel()
        store.flush(timeout=10)
        assert first.result(timeout=0) is True
        assert store.get("tx-1") is not None


def test_invalid_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        SQLiteAuditStore(tmp_path / "a.sqlite3", max_batch=0)
    with SQLiteAuditStore(tmp_path / "b.sqlite3") as store, pytest.raises(ValueError):
        store.query(DecisionQuery(limit=-1))


async def test_async_append(store: SQLiteAuditStore) -> None:
    record = make_record("tx-async")
    assert await store.append(record) is True
    assert await store.append(record) is False
    await store.append_label(make_label("tx-async", True, 0))
    assert store.get("tx-async") == to_record(record)
    assert [label.is_fraud for label in store.labels("tx-async")] == [True]


def test_wal_checkpoints_run_in_their_own_thread_not_in_a_commit(db: Path) -> None:
    import time

    with SQLiteAuditStore(db) as store:
        # No commit of the writer checkpoints (answers would wait for the copy and sync)...
        assert store._writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        empty = db.stat().st_size
        futures = [store.submit(make_record(f"tx-{i}")) for i in range(300)]
        assert all(f.result(timeout=30) for f in futures)
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size > 0
        # ...the checkpoint thread copies the WAL into the database instead.
        deadline = time.monotonic() + 30
        while store._checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert store._checkpointer.checkpoints >= 2
        # The pages reached the database file: only a checkpoint copies them there.
        assert db.stat().st_size > empty
    assert not any(t.name == "riskscore-wal-checkpoint" for t in threading.enumerate())
