"""The lists' history behind the store contract: appended in order, read back after an id,
versioned by the latest id, and immutable in the database itself — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from explain.audit.list_log import NewListChange
from explain.audit.store import AuditStore
from models.rules.lists import ListState
from tests.explain import test_audit_store_contract as contract
from tests.explain.test_audit_store_contract import Opener, raw_execute

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
