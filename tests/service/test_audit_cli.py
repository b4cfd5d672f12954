"""`riskscore audit prune|backup` and the reports, on the SQLite file and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.sqlite_store import SQLiteAuditStore
from service.cli import main
from tests.explain.test_sqlite_audit_store import make_record


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        store.submit_many([make_record(f"tx-{i}", minutes=i) for i in range(50)]).result(10)
    return path


def test_backup_copies_the_sqlite_file(
    sqlite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backup.sqlite3"
    assert main(["audit", "backup", str(out), "--audit-file", str(sqlite_file)]) == 0
    assert "backed up" in capsys.readouterr().out
    with SQLiteAuditStore(out) as copy:
        assert copy.counts()["decisions"] == 50
    # Never over an existing file.
    assert main(["audit", "backup", str(out), "--audit-file", str(sqlite_file)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_backup_of_postgres_points_to_pg_dump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", "postgresql://audit:pw@127.0.0.1:1/riskscore")
    assert main(["audit", "backup", str(tmp_path / "x")]) == 2
    assert "pg_dump" in capsys.readouterr().err


def test_prune_needs_a_period(sqlite_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "prune", "--audit-file", str(sqlite_file)]) == 2
    assert "RISKSCORE_AUDIT_RETENTION_DAYS" in capsys.readouterr().err
    assert main(["audit", "prune", "--older-than", "0", "--audit-file", str(sqlite_file)]) == 2


def test_prune_and_export_on_postgres(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = [make_record(f"old-{i}", minutes=-60 * 24 * 400 - i) for i in range(3)]
    recent = [make_record(f"new-{i}", minutes=i) for i in range(5)]
    with PostgresAuditStore(postgres_url) as store:
        store.submit_many(old + recent).result(timeout=20)
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", postgres_url)
    out = tmp_path / "all.csv"
    assert main(["report", "export", "--out", str(out)]) == 0
    assert "8 decisions" in capsys.readouterr().out
    # The old decisions are of 2023-01-26, the recent ones of 2024-03-01.
    assert main(["audit", "prune", "--older-than", str(_days_since(2023, 1, 1))]) == 0
    assert "removed 0 decisions" in capsys.readouterr().out
    monkeypatch.setenv("RISKSCORE_AUDIT_RETENTION_DAYS", str(_days_since(2023, 2, 15)))
    assert main(["audit", "prune"]) == 0
    assert "removed 3 decisions" in capsys.readouterr().out
    assert main(["report", "export", "--out", str(out)]) == 0
    assert "5 decisions" in capsys.readouterr().out


def _days_since(year: int, month: int, day: int) -> int:
    """A retention period whose cutoff is that day (or just after it)."""
    return (datetime.now(UTC) - datetime(year, month, day, tzinfo=UTC)).days
