"""`riskscore audit scan`: a store written before ids were screened says where its card
numbers are (table, column, count, first/last time), never the numbers, on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStore
from service.cli import main
from tests.explain.test_sqlite_audit_store import make_record

VISA = "4111111111111111"
AMEX = "3782 822463 10005"


def _fill(store: AuditStore) -> None:
    # Decisions built in code are not screened: as a store written before this change.
    decisions = [make_record(f"tx-{i}", minutes=i) for i in range(20)]
    decisions += [make_record(VISA, minutes=30), make_record("tx-amex", customer=AMEX, minutes=40)]
    store.submit_many(decisions).result(20)


def _scanned(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["audit", "scan", *args])
    return status, capsys.readouterr().out


def test_scan_of_a_sqlite_file_says_where_never_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        _fill(store)
    status, out = _scanned(["--audit-file", str(path)], capsys)
    assert status == 1
    assert "decisions.transaction_id: 1 value, first 2024-03-01T12:30:00+00:00" in out
    assert "decisions.customer_id: 1 value, first 2024-03-01T12:40:00+00:00" in out
    assert VISA not in out and "3782" not in out and "822463" not in out

    clean = tmp_path / "clean.sqlite3"
    with SQLiteAuditStore(clean) as store:
        store.submit_many([make_record("tx-1")]).result(20)
    assert _scanned(["--audit-file", str(clean)], capsys) == (
        0,
        f"no card numbers found in {clean}\n",
    )


def test_scan_of_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with PostgresAuditStore(postgres_url) as store:
        _fill(store)
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", postgres_url)
    status, out = _scanned([], capsys)
    assert status == 1
    assert "decisions.transaction_id: 1 value" in out
    assert "decisions.customer_id: 1 value" in out
    assert VISA not in out and "822463" not in out


def test_scan_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "scan", "--audit-file", str(tmp_path / "none.sqlite3")]) == 2
    assert "no audit store" in capsys.readouterr().err


def test_report_commands_screen_ids_as_the_api_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        store.submit_many([make_record("tx-1")]).result(20)
    out = str(tmp_path / "page.html")
    decision = ["report", "decision", VISA, "--out", out, "--audit-file", str(path)]
    export = ["report", "export", "--customer-id", AMEX, "--format", "csv", "--out", out]
    for command in (decision, [*export, "--audit-file", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "send a token" in err and VISA not in err
    # Under tokenise the card is looked up as its token (none is stored here).
    monkeypatch.setenv("RISKSCORE_PAN_POLICY", "tokenise")
    monkeypatch.setenv("RISKSCORE_PAN_HMAC_KEY", "k" * 32)
    assert main(decision) == 2
    err = capsys.readouterr().err
    assert "no decision recorded for transaction 'tok_" in err and VISA not in err
