"""Where an audit store holds card numbers: ``riskscore audit scan``.

A store written before riskscore screened ids (or under ``RISKSCORE_PAN_POLICY=allow``)
may hold card numbers in clear, and its rows cannot be edited (the tables refuse updates:
an audit record is evidence). The scan says how many values and where — table, column,
count, first and last time — and never the number itself, so its output can be pasted into
a ticket. Every text and binary column of every table is read, whatever the schema version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from explain.audit.store import AuditStoreError
from features.card_numbers import bytes_contain_card_number, text_contains_card_number

# The time a row of each table is dated by (milliseconds since the epoch).
TIME_COLUMNS = {
    "decisions": "decided_at_ms",
    "labels": "received_at_ms",
    "list_changes": "changed_at_ms",
}
# Rows read per round trip from PostgreSQL.
FETCH_ROWS = 5000


@dataclass(frozen=True)
class Finding:
    """Values of one column that hold a card number."""

    table: str
    column: str
    count: int
    first_ms: int | None
    last_ms: int | None

    def line(self) -> str:
        span = ""
        if self.first_ms is not None and self.last_ms is not None:
            span = f", first {_iso(self.first_ms)}, last {_iso(self.last_ms)}"
        values = "value" if self.count == 1 else "values"
        return f"{self.table}.{self.column}: {self.count} {values}{span}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def holds_card_number(value: object) -> bool:
    if isinstance(value, str):
        return text_contains_card_number(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes_contain_card_number(bytes(value))
    return False


def _tally(table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> list[Finding]:
    """Findings of rows shaped (time or None, *columns)."""
    counts = dict.fromkeys(columns, 0)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for when, *values in rows:
        for column, value in zip(columns, values, strict=True):
            if not holds_card_number(value):
                continue
            counts[column] += 1
            if when is not None:
                first[column] = min(first.get(column, when), when)
                last[column] = max(last.get(column, when), when)
    return [
        Finding(table, column, n, first.get(column), last.get(column))
        for column, n in counts.items()
        if n
    ]


def scan_sqlite(path: Path) -> list[Finding]:
    """The card numbers of a SQLite audit file, opened read-only (the service may run)."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditStoreError(f"cannot open {path}: {exc}") from None
    try:
        findings: list[Finding] = []
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = [
                row[1]
                for row in connection.execute(f'PRAGMA table_info("{table}")')
                if not row[2].upper().startswith(("INT", "REAL", "NUM"))
            ]
            if not columns:
                continue
            when = TIME_COLUMNS.get(table, "NULL")
            selected = ", ".join(f'"{c}"' for c in columns)
            rows = connection.execute(f'SELECT {when}, {selected} FROM "{table}"')
            findings += _tally(table, columns, rows)
        return findings
    except sqlite3.Error as exc:
        raise AuditStoreError(f"cannot read {path}: {exc}") from None
    finally:
        connection.close()


def scan_postgres(connection: Any) -> list[Finding]:
    """The card numbers of a PostgreSQL audit store (partitioned tables read once, through
    their parent)."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition ORDER BY c.relname"
        )
    ]
    findings: list[Finding] = []
    for table in tables:
        typed = [
            (row[0], row[1])
            for row in connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s AND data_type IN "
                "('text', 'bytea', 'character varying', 'json', 'jsonb') ORDER BY ordinal_position",
                (table,),
            )
        ]
        if not typed:
            continue
        columns = [column for column, _ in typed]
        when = TIME_COLUMNS.get(table, "NULL")
        # Text as text (JSON too), binary as bytes: each scanned as it is stored.
        selected = ", ".join(f'"{c}"' if t == "bytea" else f'"{c}"::text' for c, t in typed)
        findings += _tally(table, columns, _streamed(connection, when, selected, table))
    return findings


def _streamed(connection: Any, when: str, selected: str, table: str) -> Iterator[tuple[Any, ...]]:
    # A server-side cursor: a store of millions of rows is read in pages, not at once.
    with connection.transaction(), connection.cursor(name="card_number_scan") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(f'SELECT {when}, {selected} FROM "{table}"')
        yield from cursor
