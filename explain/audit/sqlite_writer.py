"""The SQLite audit store's one writer: group commit (``group_commit.py``) on one file.

``BEGIN IMMEDIATE`` takes the file's write lock before the id check, so nothing can slip
in between the check and the insert; each commit is one sync (``synchronous = FULL``).
The schema's triggers still refuse any conflicting insert.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explain.audit import challenger_log
from explain.audit.group_commit import WRITER_THREAD_NAME, GroupCommitWriter, WriterStats
from explain.schema import ExplanationSchema

__all__ = ["WRITER_THREAD_NAME", "SQLiteWriter", "WriterStats"]

_INSERT_DECISION = """
INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,
    decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,
    record_json, fallback, record, latency_us, reason_positions, fallback_reason,
    original_amount, original_currency, rate_version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json)
VALUES (?, ?, ?, ?, ?)
"""
# A row already stored for the same decision and version is skipped by the table's own
# trigger (RAISE(IGNORE)): the first verdict stands.
_INSERT_CHALLENGER = (
    f"INSERT INTO challenger_scores ({challenger_log.COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# SQLite's default limit on bound parameters per statement is far above this.
_IN_CHUNK = 500


class SQLiteWriter(GroupCommitWriter):
    """Owns the write connection to one SQLite file and the writer thread."""

    database_errors = (sqlite3.Error,)
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        window_s: float,
        max_batch: int,
        on_schema: Callable[[int, ExplanationSchema], None],
    ) -> None:
        super().__init__(str(path), window_s=window_s, max_batch=max_batch, on_schema=on_schema)
        self._conn = conn
        self.start()

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _stored_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._conn.execute(
                    f"SELECT transaction_id FROM decisions WHERE transaction_id IN ({marks})",
                    chunk,
                )
            )
        return found

    def _find_or_insert_schema(self, schema: ExplanationSchema) -> int:
        row = self._conn.execute(
            "SELECT id FROM explanation_schemas WHERE key = ?", (schema.key,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        cursor = self._conn.execute(
            "INSERT INTO explanation_schemas (key, schema_json) VALUES (?, ?)",
            (schema.key, schema.to_json()),
        )
        return int(cursor.lastrowid or 0)

    def _insert(
        self,
        decisions: list[tuple[Any, ...]],
        labels: list[tuple[Any, ...]],
        challengers: list[tuple[Any, ...]],
    ) -> None:
        if decisions:
            self._conn.executemany(_INSERT_DECISION, decisions)
        if labels:
            self._conn.executemany(_INSERT_LABEL, labels)
        if challengers:
            self._conn.executemany(_INSERT_CHALLENGER, challengers)

    def _commit_transaction(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _close_connection(self) -> None:
        self._conn.close()
