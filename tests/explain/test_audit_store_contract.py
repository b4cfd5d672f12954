"""One contract, two stores: what the scorer, the warm start and the reports rely on holds
for the SQLite file and for PostgreSQL alike (a real server, started by the fixture)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import psycopg
import pytest

from explain.audit import postgres_schema
from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStore, AuditStoreError, DecisionQuery
from explain.decision import to_record
from explain.records import LabelRecord
from explain.reports.query import page_key
from features.currency import Pricing, RateTable
from tests.explain.test_sqlite_audit_store import BASE, BASE_MS, make_label, make_record

Opener = Callable[..., AuditStore]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, location): a file path or a database URL, fresh for each test."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "audit.sqlite3")
    return "postgres", str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_store(backend: tuple[str, str]) -> Iterator[Opener]:
    kind, location = backend
    opened: list[AuditStore] = []

    def opener(**options: float) -> AuditStore:
        cls = SQLiteAuditStore if kind == "sqlite" else PostgresAuditStore
        store = cls(location, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close(timeout=10)


@pytest.fixture
def store(open_store: Opener) -> AuditStore:
    return open_store()


def raw_execute(backend: tuple[str, str], sql: str) -> None:
    """Run SQL on a connection of its own, as someone bypassing riskscore would."""
    kind, location = backend
    if kind == "sqlite":
        conn = sqlite3.connect(location, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()
    else:
        with psycopg.connect(location, autocommit=True) as pg:
            pg.execute(sql)


def write_all(store: AuditStore, *decisions: object) -> list[bool]:
    futures = [store.submit(d) for d in decisions]  # type: ignore[arg-type]
    return [f.result(timeout=20) for f in futures]


def test_durable_record_reads_back_the_same_after_reopening(open_store: Opener) -> None:
    decision = make_record("tx-1", minutes=5)
    first = open_store()
    assert first.submit(decision).result(timeout=20) is True
    assert first.get("tx-1") == to_record(decision)
    assert first.get("unknown") is None
    first.close(timeout=10)
    again = open_store()
    assert again.get("tx-1") == to_record(decision)
    assert again.get_many(["tx-1", "unknown", "tx-1"]) == {"tx-1": to_record(decision)}
    vector = again.vectors_of(["tx-1"])["tx-1"]
    assert vector.features == {"amount": 42.5, "hour": 13.0}
    assert vector.epoch_ms == BASE_MS + 5 * 60_000


def test_a_transaction_id_is_recorded_once(store: AuditStore) -> None:
    original = make_record("tx-1", action="approve", score=0.1)
    assert write_all(store, original) == [True]
    assert write_all(store, make_record("tx-1", action="decline", score=0.95)) == [False]
    # In one group, and in another month (another partition): the first still stands.
    group = [make_record("tx-2"), make_record("tx-2", score=0.7), make_record("tx-1", minutes=1e5)]
    assert store.submit_many(group).result(timeout=20) == [True, False, False]
    assert store.get("tx-1") == to_record(original)


def test_two_stores_racing_on_one_id_record_it_once(open_store: Opener) -> None:
    # Two processes on one database, each with its own writer, submitting the same ids in
    # large groups at the same instant: their id checks overlap, and only one may win. The
    # copies differ in event time, so (on PostgreSQL) no primary key would catch them.
    stores = [open_store(), open_store()]
    rounds, size = 5, 400
    start = threading.Barrier(2)
    results: list[list[object]] = [[], []]

    def submitter(index: int) -> None:
        for round_ in range(rounds):
            decisions = [make_record(f"tx-{round_}-{i}", minutes=index) for i in range(size)]
            start.wait()
            results[index] += stores[index].submit_many(decisions).result(timeout=60)

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all({a, b} == {True, False} for a, b in zip(*results, strict=True))
    assert stores[0].counts()["decisions"] == rounds * size  # type: ignore[attr-defined]


def test_concurrent_submits_share_commits(open_store: Opener) -> None:
    store = open_store(commit_window_ms=20)
    futures = [store.submit(make_record(f"tx-{i}")) for i in range(200)]
    assert all(f.result(timeout=20) for f in futures)
    stats = store.stats  # type: ignore[attr-defined]
    assert stats.records == 200 and 1 <= stats.commits < 200


def test_search_filters_order_and_cursor(store: AuditStore) -> None:
    write_all(
        store,
        make_record("late", minutes=30, action="decline", customer="c2", score=0.95),
        make_record("early", minutes=0),
        make_record("tie-b", minutes=10, action="review", score=0.6),
        make_record("tie-a", minutes=10, action="decline", score=0.92),
        make_record("boundary", minutes=20, customer="c2"),
    )

    def ids(query: DecisionQuery) -> list[str]:
        return [r.transaction_id for r in store.query(query)]

    assert ids(DecisionQuery()) == ["early", "tie-b", "tie-a", "boundary", "late"]
    start, end = BASE + timedelta(minutes=10), BASE + timedelta(minutes=20)
    assert ids(DecisionQuery(start=start, end=end)) == ["tie-b", "tie-a"]
    assert ids(DecisionQuery(action="decline")) == ["tie-a", "late"]
    assert ids(DecisionQuery(customer_id="c2", min_score=0.9)) == ["late"]
    assert ids(DecisionQuery(stage="fast", fallback=False, limit=2)) == ["early", "tie-b"]
    assert ids(DecisionQuery(fallback=True)) == []
    # Newest first, ties by id descending; each page starts strictly after the last.
    pages, after = [], None
    while page := store.page(DecisionQuery(limit=2), after):
        pages.append([r.transaction_id for r in page])
        after = page_key(page[-1])
    assert pages == [["late", "boundary"], ["tie-b", "tie-a"], ["early"]]


def test_labels_and_warm_start_reads(store: AuditStore) -> None:
    write_all(store, make_record("old", minutes=-60), make_record("a", minutes=1))
    write_all(store, make_record("b", minutes=2, customer="c2"), make_record("c", minutes=2))
    labels = [
        make_label("a", False, received_minutes=0),
        make_label("a", True, received_minutes=5),
        make_label("b", True, received_minutes=3),
        make_label("b", False, received_minutes=1),  # arrives last, received earlier
        make_label("old", True, received_minutes=0),
    ]
    for future in [store.submit_label(label) for label in labels]:
        assert future.result(timeout=20) is None
    assert store.labels("a") == labels[:2]
    assert store.labels("b") == [labels[3], labels[2]]
    assert list(store.latest_labels(BASE_MS)) == [("a", True), ("b", True)]
    assert store.latest_labels_of(["a", "b", "c", "old"]) == {"a": True, "b": True, "old": True}
    by_id = store.labels_by_transaction(["b", "c", "a", "unknown"])
    assert by_id == {"b": [labels[3], labels[2]], "c": [], "a": labels[:2], "unknown": []}
    events = [e.transaction_id for e in store.rebuild_events(BASE_MS)]
    assert events == ["a", "b", "c"]  # event time, ties in decision order
    assert store.latest_event_ms() == BASE_MS + 120_000
    recent = [v.transaction_id for v in store.recent_feature_vectors(0, per_customer=2)]
    assert recent == ["a", "b", "c"]  # cust-1's latest two, c2's one
    partial = store.rebuild_events(0)
    assert next(partial).transaction_id == "old"
    partial.close()  # an abandoned replay leaves the store usable
    assert store.get("c") is not None


def test_a_replay_after_a_write_mark_has_what_was_written_after_it(store: AuditStore) -> None:
    assert store.written_mark() is None  # empty
    write_all(store, make_record("a", minutes=1), make_record("b", minutes=2))
    mark = store.written_mark()
    assert mark is not None
    # Written after the mark: one later in event time, one days earlier (a late payment).
    write_all(store, make_record("late", minutes=-3000), make_record("c", minutes=3))
    after = store.written_mark()
    assert after is not None and after > mark
    events = [e.transaction_id for e in store.rebuild_events(BASE_MS - 10**10, mark)]
    assert events == ["late", "c"]  # in event-time order
    assert [e.transaction_id for e in store.rebuild_events(BASE_MS, mark)] == ["c"]
    assert list(store.rebuild_events(0, after)) == []


def test_history_cannot_be_rewritten_by_hand(store: AuditStore, backend: tuple[str, str]) -> None:
    write_all(store, make_record("tx-1", score=0.2))
    store.submit_label(make_label("tx-1", False, 0)).result(timeout=20)
    store.flush(timeout=10)
    errors = (sqlite3.IntegrityError, psycopg.errors.IntegrityConstraintViolation)
    for statement in (
        "UPDATE decisions SET score = 0.9 WHERE transaction_id = 'tx-1'",
        "DELETE FROM decisions",
        "UPDATE labels SET is_fraud = 1",
        "DELETE FROM labels",
    ):
        with pytest.raises(errors, match="immutable"):
            raw_execute(backend, statement)
    if backend[0] == "postgres":
        with pytest.raises(errors, match="immutable"):
            raw_execute(backend, "TRUNCATE decisions")
        with pytest.raises(errors, match="immutable"):
            raw_execute(backend, "TRUNCATE decisions_202403")  # one partition alone
    assert store.get("tx-1") == to_record(make_record("tx-1", score=0.2))


def test_a_record_breaking_a_constraint_fails_alone(open_store: Opener) -> None:
    store = open_store(commit_window_ms=60_000)
    impossible = msgspec.structs.replace(make_record("tx-bad"), score=2.0)
    good, bad, after = (
        store.submit(make_record("tx-good")),
        store.submit(impossible),
        store.submit(make_record("tx-after")),
    )
    store.flush(timeout=20)
    with pytest.raises(AuditStoreError, match=r"(?i)check"):
        bad.result(timeout=0)
    assert good.result(timeout=0) is True and after.result(timeout=0) is True
    assert store.get("tx-bad") is None


def test_writable_and_closed(store: AuditStore) -> None:
    store.check_writable()
    store.close(timeout=10)
    store.close(timeout=10)
    with pytest.raises(AuditStoreError, match="closed"):
        store.submit(make_record("late"))


def count_rows(backend: tuple[str, str], sql: str) -> int:
    kind, location = backend
    if kind == "sqlite":
        conn = sqlite3.connect(location)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    with psycopg.connect(location) as pg:
        row = pg.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_retention_removes_old_decisions_only_and_records_it(
    store: AuditStore, backend: tuple[str, str]
) -> None:
    day = 24 * 60
    write_all(
        store,
        make_record("january", minutes=-45 * day),  # 2024-01-16
        make_record("early-february", minutes=-25 * day),  # 2024-02-05
        make_record("march", minutes=0),
    )
    store.submit_label(make_label("march", True, 0)).result(timeout=20)
    # A 30-day period seen from 2024-03-11: the cutoff is 2024-02-10.
    pruned = store.prune(30, now=BASE + timedelta(days=10))
    present = {t for t in ("january", "early-february", "march") if store.get(t)}
    if backend[0] == "sqlite":  # a compaction: exactly what is older than the cutoff
        assert present == {"march"}
        assert (pruned.decisions, pruned.partitions) == (2, ())
    else:  # whole months only: February is partly inside the period, so it stays
        assert present == {"early-february", "march"}
        assert pruned.partitions == ("decisions_202401",)
        assert pruned.decisions == 1
    assert store.labels("march") == [make_label("march", True, 0)]
    logged = count_rows(backend, "SELECT count(*) FROM retention_log")
    assert logged == (1 if backend[0] == "sqlite" else len(pruned.partitions))
    # Nothing else can delete, even now; and the old month can still be written again.
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.IntegrityConstraintViolation)):
        raw_execute(backend, "DELETE FROM decisions")
    assert write_all(store, make_record("late-january", minutes=-44 * day)) == [True]
    assert store.get("late-january") is not None


def test_sqlite_backup_is_a_readable_copy(tmp_path: Path) -> None:
    with SQLiteAuditStore(tmp_path / "audit.sqlite3") as store:
        write_all(store, *(make_record(f"tx-{i}", minutes=i) for i in range(300)))
        seen: list[tuple[int, int]] = []
        store.backup(tmp_path / "copy.sqlite3", lambda done, total: seen.append((done, total)))
        with pytest.raises(AuditStoreError, match="already exists"):
            store.backup(tmp_path / "copy.sqlite3", lambda done, total: None)
    assert seen and seen[-1][0] == seen[-1][1] > 0
    with SQLiteAuditStore(tmp_path / "copy.sqlite3") as copy:
        assert copy.counts()["decisions"] == 300
        assert copy.get("tx-7") == to_record(make_record("tx-7", minutes=7))


def test_postgres_queries_are_served_by_indexes(postgres_url: str) -> None:
    # With sequential scans priced out, a query without a usable index would still show
    # one: every query shape the store makes must find an index on every partition.
    with PostgresAuditStore(postgres_url) as store:
        store.submit_many(
            [make_record(f"tx-{i}", minutes=i * 1000, customer=f"c{i % 7}") for i in range(200)]
        ).result(timeout=20)
    shapes = {
        "by id": "SELECT * FROM decisions WHERE transaction_id = ANY(ARRAY['tx-1'])",
        "search by time": "SELECT * FROM decisions WHERE event_time_ms >= 0"
        " ORDER BY event_time_ms, seq LIMIT 10",
        "newest first": "SELECT * FROM decisions"
        " ORDER BY event_time_ms DESC, transaction_id DESC LIMIT 10",
        "by customer": "SELECT * FROM decisions WHERE customer_id = 'c1'"
        " ORDER BY event_time_ms DESC, transaction_id DESC LIMIT 10",
        "by action": "SELECT * FROM decisions WHERE action = 'decline' AND event_time_ms >= 0",
        "labels of an id": "SELECT * FROM labels WHERE transaction_id = 'tx-1'"
        " ORDER BY received_at_ms, id",
    }
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET enable_seqscan = off")
        for name, sql in shapes.items():
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {sql}").fetchall())
            assert "Seq Scan" not in plan, f"{name}:\n{plan}"


def raw_fetch(backend: tuple[str, str], sql: str) -> list[tuple[object, ...]]:
    kind, location = backend
    if kind == "sqlite":
        conn = sqlite3.connect(location)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(location) as pg:
        return [tuple(row) for row in pg.execute(sql).fetchall()]


def test_a_converted_payment_keeps_what_was_received(
    backend: tuple[str, str], store: AuditStore
) -> None:
    table = RateTable(reference="EUR", version="2026-12-01", rates={"USD": 0.5})
    plain = make_record("tx-eur")
    received = plain.transaction.model_copy(update={"transaction_id": "tx-usd", "currency": "USD"})
    converted = msgspec.structs.replace(
        make_record("tx-usd"), transaction=Pricing("EUR", table).price(received)
    )
    assert write_all(store, plain, converted) == [True, True]
    rows = raw_fetch(
        backend,
        "SELECT transaction_id, amount, original_amount, original_currency, rate_version"
        " FROM decisions ORDER BY transaction_id",
    )
    amount = plain.transaction.amount
    assert rows == [
        ("tx-eur", amount, None, None, None),
        ("tx-usd", amount * 0.5, amount, "USD", "2026-12-01"),
    ]


def test_a_postgres_database_of_schema_version_1_gains_the_currency_columns(
    postgres_url: str,
) -> None:
    # Version 1 as it shipped: the tables without the three columns, version 1 recorded.
    PostgresAuditStore(postgres_url).close(timeout=10)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute(
            "ALTER TABLE decisions DROP COLUMN original_amount,"
            " DROP COLUMN original_currency, DROP COLUMN rate_version"
        )
        pg.execute("DELETE FROM riskscore_audit_schema")
        pg.execute("INSERT INTO riskscore_audit_schema (version) VALUES (1)")
    store = PostgresAuditStore(postgres_url)
    try:
        assert write_all(store, make_record("tx-1")) == [True]
    finally:
        store.close(timeout=10)
    with psycopg.connect(postgres_url) as pg:
        versions = [row[0] for row in pg.execute("SELECT version FROM riskscore_audit_schema")]
        row = pg.execute("SELECT original_currency, rate_version FROM decisions").fetchone()
    assert sorted(versions) == [1, postgres_schema.SCHEMA_VERSION]
    assert row == (None, None)


def test_training_rows_give_the_vectors_as_decided_and_the_labels_known_by_a_cut_off(
    store: AuditStore,
) -> None:
    write_all(store, make_record("old", minutes=-60), make_record("a", minutes=1))
    write_all(
        store,
        make_record("b", minutes=2, customer="c2", action="decline", score=0.7),
        make_record("c", minutes=2),
    )
    day = BASE + timedelta(days=1)
    labels = [
        make_label("a", False, received_minutes=0),
        make_label("a", True, received_minutes=5),
        make_label("b", True, received_minutes=3),
        # Received early, but known only on the third day (a chargeback dated later).
        LabelRecord(
            transaction_id="c", is_fraud=True, labelled_at=BASE + timedelta(days=3), received_at=day
        ),
    ]
    for future in [store.submit_label(label) for label in labels]:
        assert future.result(timeout=20) is None

    def rows(known_by: datetime) -> list[tuple[str, str, float, bool | None]]:
        read = store.training_rows(BASE_MS, BASE_MS + 600_000, int(known_by.timestamp() * 1000))
        return [(r.transaction_id, r.action, r.score, r.is_fraud) for r in read]

    assert rows(day + timedelta(days=1)) == [
        ("a", "approve", 0.1, True),
        ("b", "decline", 0.7, True),
        ("c", "approve", 0.1, None),
    ]
    # Before a's second label was known, its first one is its latest.
    assert [r[3] for r in rows(day + timedelta(minutes=4))] == [False, True, None]
    assert [r[3] for r in rows(BASE)] == [None, None, None]
    vectors = store.vectors_of(["a", "b", "c"])
    for row in store.training_rows(BASE_MS, BASE_MS + 600_000, 0):
        assert dict(zip(row.feature_names, row.values.tolist(), strict=True)) == (
            vectors[row.transaction_id].features
        )
        assert row.values.dtype == np.float64
