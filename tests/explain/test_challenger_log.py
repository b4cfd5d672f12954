"""The shadow challenger's rows behind the store contract: written by the group-commit
writer, read back beside their decisions with their labels, idempotent per (decision,
version), immutable in the database itself, and removed by retention with their
decisions — SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from explain.audit.challenger_log import ChallengerScore
from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStore
from explain.decision import Decision, to_record
from tests.explain import test_audit_store_contract as contract
from tests.explain.test_audit_store_contract import count_rows, raw_execute, write_all
from tests.explain.test_sqlite_audit_store import BASE, make_label, make_record

# The contract's fixtures: each test runs against a SQLite file and a real PostgreSQL.
backend = contract.backend
open_store = contract.open_store
store = contract.store

DAY_MINUTES = 24 * 60


def challenger_of(decision: Decision, version: str = "v2", score: float = 0.7) -> ChallengerScore:
    """A challenger's verdict on a decision, explained in the decision's shape."""
    explanation = to_record(decision).explanation
    reasons = [
        {
            "code": "amount",
            "value": 42.5,
            "contribution": 1.25,
            "direction": "raises",
            "text": "the amount: 42.50 (raises risk)",
        }
    ]
    return ChallengerScore(
        transaction_id=decision.transaction_id,
        model_version=version,
        event_time_ms=decision.transaction.epoch_ms,
        score=score,
        action="decline" if score >= 0.6 else "approve",
        review_threshold=0.3,
        decline_threshold=0.6,
        reasons_json=json.dumps(reasons),
        explanation_json=explanation.model_dump_json(),
        sequence_score=None,
        scored_at_ms=decision.transaction.epoch_ms + 5,
    )


def write_challengers(store: AuditStore, *scores: ChallengerScore) -> list[object]:
    return list(store.submit_challenger_scores(scores).result(timeout=20))


def test_rows_read_back_beside_their_decisions_and_labels(store: AuditStore) -> None:
    first, second, unshadowed = (make_record(f"tx-{i}", minutes=i) for i in range(3))
    write_all(store, first, second, unshadowed)
    store.submit_label(make_label("tx-1", True, 1)).result(timeout=20)
    rows = [challenger_of(first, score=0.2), challenger_of(second), challenger_of(second, "v3")]
    assert write_challengers(store, *rows) == [True, True, True]

    pairs = list(store.challenger_pairs(BASE, BASE + timedelta(hours=1)))
    assert [(p.decision.transaction_id, p.challenger.model_version) for p in pairs] == [
        ("tx-0", "v2"),
        ("tx-1", "v2"),
        ("tx-1", "v3"),
    ]
    assert pairs[0] == (to_record(first), rows[0], None)
    assert pairs[1].label is True
    assert pairs[1].challenger.reasons()[0].contribution == 1.25
    assert pairs[1].challenger.explanation() == to_record(second).explanation
    only_v3 = list(store.challenger_pairs(BASE, BASE + timedelta(hours=1), version="v3"))
    assert [p.challenger for p in only_v3] == [rows[2]]
    # [start, end): the second decision's minute is left out by an end at it.
    early = list(store.challenger_pairs(BASE, BASE + timedelta(minutes=1)))
    assert [p.decision.transaction_id for p in early] == ["tx-0"]
    assert store.challenger_versions(BASE, BASE + timedelta(hours=1)) == ["v2", "v3"]
    assert store.challenger_scores_of(["tx-1", "tx-2"]) == rows[1:]


def test_a_second_row_for_the_same_decision_and_version_leaves_the_first(
    store: AuditStore,
) -> None:
    decision = make_record("tx-1")
    write_all(store, decision)
    first = challenger_of(decision, score=0.2)
    assert write_challengers(store, first) == [True]
    # Again, alone and within a batch: the first verdict stands, nothing fails.
    assert write_challengers(store, challenger_of(decision, score=0.9)) == [True]
    assert write_challengers(store, challenger_of(decision, "v3"), first) == [True, True]
    assert [s.score for s in store.challenger_scores_of(["tx-1"])] == [0.2, 0.7]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE challenger_scores SET score = 0.99",
        "DELETE FROM challenger_scores",
    ],
)
def test_rows_are_immutable_in_the_database(
    store: AuditStore, backend: tuple[str, str], sql: str
) -> None:
    decision = make_record("tx-1")
    write_all(store, decision)
    write_challengers(store, challenger_of(decision))
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.IntegrityConstraintViolation)):
        raw_execute(backend, sql)
    (row,) = store.challenger_scores_of(["tx-1"])
    assert row.score == 0.7


def test_retention_removes_the_rows_of_the_decisions_it_removes(
    store: AuditStore, backend: tuple[str, str]
) -> None:
    old = make_record("january", minutes=-45 * DAY_MINUTES)  # 2024-01-16
    recent = make_record("march", minutes=0)
    write_all(store, old, recent)
    write_challengers(store, challenger_of(old), challenger_of(recent))
    pruned = store.prune(30, now=BASE + timedelta(days=10))
    assert store.get("january") is None
    assert [s.transaction_id for s in store.challenger_scores_of(["january", "march"])] == ["march"]
    assert count_rows(backend, "SELECT count(*) FROM challenger_scores") == 1
    if backend[0] == "postgres":
        assert set(pruned.partitions) == {"decisions_202401", "challenger_scores_202401"}
    # The triggers are back after the compaction.
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.IntegrityConstraintViolation)):
        raw_execute(backend, "DELETE FROM challenger_scores")


def test_rows_go_with_decisions_in_one_commit(store: AuditStore) -> None:
    # One group of decisions and one of challenger rows queued together: the writer may
    # take them in one transaction; either way both are durable when their futures are.
    decisions = [make_record(f"tx-{i}", minutes=i) for i in range(50)]
    write_all(store, *decisions)
    futures = [
        store.submit_many([make_record(f"later-{i}", minutes=60 + i) for i in range(50)]),
        store.submit_challenger_scores([challenger_of(d) for d in decisions]),
    ]
    assert all(outcome is True for f in futures for outcome in f.result(timeout=20))
    pairs = list(store.challenger_pairs(BASE, BASE + timedelta(days=1)))
    assert len(pairs) == 50
    assert {p.challenger.transaction_id for p in pairs} == {d.transaction_id for d in decisions}


def test_a_postgres_database_of_schema_version_3_gains_the_table(postgres_url: str) -> None:
    # Version 3 as it shipped: no challenger_scores, version 3 recorded last.
    PostgresAuditStore(postgres_url).close(timeout=10)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute("DROP TABLE challenger_scores")
        pg.execute("DELETE FROM riskscore_audit_schema")
        pg.execute("INSERT INTO riskscore_audit_schema (version) VALUES (3)")
    store = PostgresAuditStore(postgres_url)
    try:
        decision = make_record("tx-1")
        write_all(store, decision)
        assert write_challengers(store, challenger_of(decision)) == [True]
    finally:
        store.close(timeout=10)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        versions = [row[0] for row in pg.execute("SELECT version FROM riskscore_audit_schema")]
        assert sorted(versions) == [3, 4]
        with pytest.raises(psycopg.Error, match="immutable"):
            pg.execute("DELETE FROM challenger_scores")


def test_a_sqlite_file_of_schema_version_6_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    SQLiteAuditStore(path).close(timeout=10)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TABLE challenger_scores")
        conn.execute("PRAGMA user_version = 6")
    finally:
        conn.close()
    with SQLiteAuditStore(path) as reopened:
        decision = make_record("tx-1")
        write_all(reopened, decision)
        assert write_challengers(reopened, challenger_of(decision)) == [True]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
    finally:
        conn.close()
