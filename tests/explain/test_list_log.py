"""The lists' history behind the store contract: appended in order, read back after an id,
versioned by the latest id, and immutable in the database itself — SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import msgspec
import psycopg
import pytest

from explain.audit import compact, postgres_schema
from explain.audit.list_log import NewListChange
from explain.audit.postgres_store import LIST_CHANGES_LOCK, PostgresAuditStore
from explain.audit.store import AuditStore, DecisionQuery
from explain.decision import Reasons, from_record, response_json, to_record, with_overrides
from models.rules.lists import ListState
from models.rules.policy import Override, Policy
from service.list_sync import ListSync
from tests.explain import test_audit_store_contract as contract
from tests.explain.test_audit_store_contract import Opener, raw_execute, write_all
from tests.explain.test_sqlite_audit_store import make_record

# The contract's fixtures: each test runs against a SQLite file and a real PostgreSQL.
backend = contract.backend
open_store = contract.open_store
store = contract.store


def test_changes_append_in_order_and_read_back_after_an_id(store: AuditStore) -> None:
    assert store.list_version() == 0
    assert store.list_changes_after(0) == []
    first = store.append_list_changes(
        [
            NewListChange("blocked_customers", "C1", "add", "chargeback ring", "key:ab12"),
            NewListChange("allowed_terminals", "T9", "add", "", "cli:ops"),
        ]
    )
    second = store.append_list_changes(
        [NewListChange("blocked_customers", "C1", "remove", "cleared", "key:ab12")]
    )
    assert [c.id for c in first + second] == sorted({c.id for c in first + second})
    assert store.list_version() == second[0].id
    assert store.list_changes_after(0) == first + second
    assert store.list_changes_after(first[-1].id) == second
    state = ListState().applied(store.list_changes_after(0))
    assert dict(state.entries["blocked_customers"]) == {}
    assert dict(state.entries["allowed_terminals"]) == {"T9": ""}
    assert state.version == second[0].id
    assert first[0].actor == "key:ab12" and first[0].reason == "chargeback ring"
    assert first[0].changed_at_ms > 1_700_000_000_000


def test_changes_survive_reopening(open_store: Opener) -> None:
    written = open_store().append_list_changes(
        [NewListChange("blocked_terminals", "T1", "add", "skimmer", "key:ff00")]
    )
    assert open_store().list_changes_after(0) == written


@pytest.mark.parametrize(
    "sql", ["UPDATE list_changes SET reason = 'x'", "DELETE FROM list_changes"]
)
def test_the_history_cannot_be_rewritten(
    store: AuditStore, backend: tuple[str, str], sql: str
) -> None:
    store.append_list_changes([NewListChange("blocked_customers", "C1", "add", "r", "key:1")])
    with pytest.raises(Exception, match="immutable"):
        raw_execute(backend, sql)
    assert len(store.list_changes_after(0)) == 1


def test_an_override_and_the_rule_set_read_back_with_the_decision(store: AuditStore) -> None:
    overrides = (
        Override("LIST_blocked_customers", "raises", "customer cust-1 is on the list: ring"),
        Override("RULE_big", "raises", "rule big: amount > 10 -> review"),
    )
    plain = make_record("tx-plain")
    decided = make_record("tx-listed", minutes=1, action="decline")
    decided = msgspec.structs.replace(
        decided,
        overrides=overrides,
        rules_version="rules-0123456789ab",
        reasons=Reasons(
            decided.reasons.indices,
            decided.reasons.value_texts,
            with_overrides(decided.reasons.json, overrides),
        ),
    )
    assert write_all(store, plain, decided) == [True, True]
    record = store.get("tx-listed")
    assert record == to_record(decided)
    assert record is not None and record.rules_version == "rules-0123456789ab"
    assert [r.code for r in record.reasons] == ["LIST_blocked_customers", "RULE_big", "amount"]
    assert record.reasons[0].contribution == 0.0 and record.reasons[0].value == 1.0
    # A replay is answered with the same reasons and version as the first answer.
    assert response_json(from_record(record)) == response_json(decided)
    assert from_record(record).overrides == overrides
    # Period reports count the model's reasons, on either path (SQL columns or records).
    (columns,) = list(store.decision_columns(DecisionQuery()))
    assert columns.reasons == [[0], [0]]
    # A decision without lists or rules reads back without the field, as before.
    untouched = store.get("tx-plain")
    assert untouched is not None and "rules_version" not in untouched.model_dump_json()


def test_the_compact_record_of_a_decision_without_overrides_is_unchanged() -> None:
    # The bytes earlier code wrote (17 fields): lists and rules add none when they did not act.
    decision = make_record("tx-1")
    assert len(msgspec.msgpack.decode(compact.encode(decision, 1))) == 17


def test_a_change_reaches_another_process_at_its_poll(open_store: Opener) -> None:
    # Two stores on one database stand for two processes (workers, consumers).
    writer, reader = open_store(), open_store()
    policy = Policy()
    sync = ListSync(reader, policy)
    assert sync.refresh_if_changed() is False
    writer.append_list_changes([NewListChange("blocked_terminals", "T7", "add", "r", "key:1")])
    assert sync.refresh_if_changed() is True
    assert "T7" in policy.lists.entries["blocked_terminals"]
    assert sync.refresh_if_changed() is False


def test_a_postgres_database_of_schema_version_2_gains_the_list_history(
    postgres_url: str,
) -> None:
    # Version 2 as it shipped: no list_changes table, version 2 recorded last.
    PostgresAuditStore(postgres_url).close(timeout=10)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute("DROP TABLE list_changes")
        pg.execute("DELETE FROM riskscore_audit_schema")
        pg.execute("INSERT INTO riskscore_audit_schema (version) VALUES (2)")
    store = PostgresAuditStore(postgres_url)
    try:
        assert store.list_version() == 0
        store.append_list_changes([NewListChange("blocked_customers", "C1", "add", "r", "k")])
        assert store.list_version() == 1
    finally:
        store.close(timeout=10)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        versions = [row[0] for row in pg.execute("SELECT version FROM riskscore_audit_schema")]
        assert sorted(versions) == [2, postgres_schema.SCHEMA_VERSION]
        with pytest.raises(psycopg.Error, match="immutable"):
            pg.execute("DELETE FROM list_changes")


def test_postgres_list_changes_commit_in_the_order_of_their_ids(postgres_url: str) -> None:
    # Ids come from a sequence at insert time. A writer still in its transaction (a large
    # `riskscore lists load`) holds a lower id than a change committed meanwhile; a process
    # polling in between moved past that id and skipped the slow change for good.
    PostgresAuditStore(postgres_url).close(timeout=10)  # the schema
    reader = PostgresAuditStore(postgres_url)
    writer = PostgresAuditStore(postgres_url)
    policy = Policy()
    sync = ListSync(reader, policy)
    slow = psycopg.connect(postgres_url)
    try:
        # A writer mid-transaction, as the store writes: the lock, then its insert.
        slow.execute("SELECT pg_advisory_xact_lock(%s)", (LIST_CHANGES_LOCK,))
        slow.execute(
            "INSERT INTO list_changes (list_name, value, op, reason, actor, changed_at_ms)"
            " VALUES ('blocked_customers', 'C-SLOW', 'add', 'case 1', 'cli', 0)"
        )
        fast = threading.Thread(
            target=writer.append_list_changes,
            args=([NewListChange("blocked_customers", "C-FAST", "add", "case 2", "k")],),
        )
        fast.start()
        deadline = time.monotonic() + 30
        with psycopg.connect(postgres_url, autocommit=True) as watcher:
            # The condition waited on: the second writer queued behind the first's lock.
            while not watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the second writer did not wait its turn"
                time.sleep(0.01)
        assert not sync.refresh_if_changed()  # nothing committed yet
        slow.commit()
        fast.join(timeout=30)
        sync.refresh_if_changed()
        assert set(policy.lists.entries["blocked_customers"]) == {"C-SLOW", "C-FAST"}
    finally:
        slow.close()
        reader.close(timeout=10)
        writer.close(timeout=10)
