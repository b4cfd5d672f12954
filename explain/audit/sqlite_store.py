"""The audit store on one SQLite file: group-committed writes, readers beside the writer.

One writer thread (``sqlite_writer.py``) owns the write connection and commits groups of
decisions in one transaction and one sync, resolving their futures only then, so a future
that completes means the records survive a crash or power loss.

Reads use one connection per reading thread; WAL mode lets them see the last commit while
the writer works. Rows come in two forms (``sqlite_schema.py``): JSON records written by
version 1, and compact ones (``compact.py``); every read path gives both as the same
:class:`~explain.records.DecisionRecord`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from explain.audit.challenger_sql import SqlChallengerLog
from explain.audit.group_commit import GroupCommitLog
from explain.audit.list_log import SqlListLog
from explain.audit.sql_reads import SqlReads
from explain.audit.sqlite_checkpointer import WalCheckpointer
from explain.audit.sqlite_reports import SQLitePeriodReports
from explain.audit.sqlite_retention import backup_to, prune_before
from explain.audit.sqlite_schema import migrate
from explain.audit.sqlite_writer import WRITER_THREAD_NAME, SQLiteWriter, WriterStats
from explain.audit.store import AuditStore, AuditStoreError, Pruned, retention_cutoff_ms

__all__ = ["WRITER_THREAD_NAME", "SQLiteAuditStore", "WriterStats"]

INSERT_LIST_CHANGE = "INSERT INTO list_changes (list_name, value, op, reason, actor, changed_at_ms)"


class SQLiteAuditStore(
    GroupCommitLog, SQLitePeriodReports, SqlReads, SqlListLog, SqlChallengerLog, AuditStore
):
    """An :class:`AuditStore` in one SQLite file (created with its parent directories).

    ``commit_window_ms`` bounds how long the first record of a batch waits for company;
    ``max_batch`` bounds a batch's size; ``busy_timeout_ms`` is how long any connection
    waits for a lock held by another process before giving up.
    """

    mark = "?"
    written = "rowid"
    # A column since schema version 2; version 1 rows have it only in their JSON.
    fallback = (
        "(CASE WHEN fallback IS NOT NULL THEN fallback"
        " ELSE json_extract(record_json, '$.fallback') END)"
    )

    def __init__(
        self,
        path: str | Path,
        *,
        commit_window_ms: float = 1.0,
        max_batch: int = 512,
        busy_timeout_ms: int = 5000,
    ) -> None:
        if commit_window_ms < 0 or max_batch < 1 or busy_timeout_ms < 0:
            raise ValueError("commit_window_ms and busy_timeout_ms must be >= 0, max_batch >= 1")
        self._path = Path(path)
        self._busy_s = busy_timeout_ms / 1000.0
        self._lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        super().__init__()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(self._path)
        except (OSError, sqlite3.Error) as exc:
            raise AuditStoreError(f"cannot open audit store {self._path}: {exc}") from exc
        try:
            migrate(conn, self._path)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise AuditStoreError(f"audit store {self._path} cannot use WAL (got {mode})")
            # In WAL, NORMAL may lose the last commits on power loss; FULL syncs every commit.
            conn.execute("PRAGMA synchronous = FULL")
            # Checkpoints run in their own thread, not inside a commit answers wait for
            # (sqlite_checkpointer.py).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise AuditStoreError(f"cannot open audit store {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._writer = SQLiteWriter(
            conn,
            self._path,
            window_s=commit_window_ms / 1000.0,
            max_batch=max_batch,
            on_schema=self._schemas.__setitem__,
        )
        # mode=rw: a checkpoint never creates a database in place of a removed one.
        self._checkpointer = WalCheckpointer(
            lambda: self._connect(f"{self._path.resolve().as_uri()}?mode=rw", uri=True)
        )

    def close(self, timeout: float | None = None) -> None:
        super().close(timeout)
        self._checkpointer.stop(timeout)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def _closed(self) -> bool:
        return self._writer.closed

    @property
    def _closed_reason(self) -> str:
        return self._writer.closed_reason

    # -- reading -------------------------------------------------------------------------

    def _connect(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        # Autocommit mode: transactions are begun explicitly, never implicitly by the module.
        # check_same_thread=False only so close() can close other threads' connections.
        return sqlite3.connect(
            target, uri=uri, timeout=self._busy_s, isolation_level=None, check_same_thread=False
        )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if self._closed:
            raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
        if conn is None:
            try:
                conn = self._connect(self._path)
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                raise AuditStoreError(f"cannot read audit store {self._path}: {exc}") from exc
            with self._lock:
                if self._closed:  # close() already swept the readers: do not leak this one
                    conn.close()
                    raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _fetchall_apart(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        # Not the thread's kept reader: a pool thread that ends would leave it open.
        if self._closed:
            raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
        try:
            conn = self._connect(self._path)
            try:
                conn.execute("PRAGMA query_only = ON")
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot read audit store {self._path}: {exc}") from exc

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot read audit store {self._path}: {exc}") from exc

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        # Rows come in chunks, so a large store is never held in memory; the read snapshot
        # stays open until the iterator is exhausted or closed.
        try:
            cursor = self._reader().execute(sql, params)
            try:
                while rows := cursor.fetchmany(512):
                    yield from rows
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot read audit store {self._path}: {exc}") from exc

    def latest_labels_of(self, transaction_ids: Sequence[str]) -> dict[str, bool]:
        found: dict[str, bool] = {}
        # In chunks: SQLite limits the number of bound parameters per statement.
        for start in range(0, len(transaction_ids), 500):
            chunk = list(transaction_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._fetchall(
                "SELECT transaction_id, is_fraud FROM ("
                " SELECT transaction_id, is_fraud, row_number() OVER ("
                "  PARTITION BY transaction_id ORDER BY received_at_ms DESC, id DESC) AS recency"
                f" FROM labels WHERE transaction_id IN ({marks})) WHERE recency = 1",
                tuple(chunk),
            )
            found.update((tid, bool(is_fraud)) for tid, is_fraud in rows)
        return found

    def _rows_of(self, columns: str, transaction_ids: Sequence[str]) -> list[Any]:
        """``columns`` of the stored decisions among these ids (one query per 500 ids)."""
        rows: list[Any] = []
        ids = list(dict.fromkeys(transaction_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self._fetchall(
                f"SELECT {columns} FROM decisions WHERE transaction_id IN ({marks})", tuple(chunk)
            )
        return rows

    # -- list changes --------------------------------------------------------------------

    def _insert_list_changes(self, rows: list[tuple[Any, ...]]) -> list[int]:
        # Rare and small: a connection of its own, beside the decision writer's group
        # commits (WAL serialises the two), synced like them.
        if self._closed:
            raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
        try:
            conn = self._connect(self._path)
            try:
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                ids = [
                    int(
                        conn.execute(
                            INSERT_LIST_CHANGE + " VALUES (?, ?, ?, ?, ?, ?)", row
                        ).lastrowid
                        or 0
                    )
                    for row in rows
                ]
                conn.execute("COMMIT")
                return ids
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot record list changes in {self._path}: {exc}") from exc

    # -- retention and backup ------------------------------------------------------------

    def prune(self, older_than_days: int, *, now: datetime | None = None) -> Pruned:
        """Remove decisions (and their labels) with event time more than
        ``older_than_days`` before ``now``: a logged compaction (``sqlite_retention.py``)."""
        cutoff_ms = retention_cutoff_ms(older_than_days, now)
        conn = self._connect(self._path)
        try:
            return prune_before(conn, cutoff_ms)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"retention on {self._path} failed: {exc}") from exc
        finally:
            conn.close()

    def backup(self, target: Path, progress: Callable[[int, int], None]) -> None:
        """A consistent copy of the file at ``target`` (which must not exist), taken while
        the store keeps writing; ``progress(pages_done, pages_total)``."""
        if target.exists():
            raise AuditStoreError(f"backup target {target} already exists")
        try:
            backup_to(self._reader(), target, progress)
        except sqlite3.Error as exc:
            target.unlink(missing_ok=True)
            raise AuditStoreError(f"backup of {self._path} failed: {exc}") from exc

    def check_writable(self) -> None:
        """Write to the file on a fresh connection and roll back: a database that is
        read-only to this process, removed, or locked by another writer for longer than
        the busy timeout is reported. A full disk is only found by the next commit.

        SQLite reuses a file handle this process already holds, so permissions taken away
        while the store is open are not seen, but then this process can in fact still write.
        """
        if self._closed:
            raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
        try:
            # mode=rw: never create a new empty database in place of a removed one.
            conn = self._connect(f"{self._path.resolve().as_uri()}?mode=rw", uri=True)
            try:
                # In WAL mode BEGIN IMMEDIATE succeeds even on a read-only file; dirtying
                # the header page is the cheapest statement that reaches the real check.
                conn.execute("BEGIN IMMEDIATE")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version = {version:d}")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit store {self._path} is not writable: {exc}") from exc
