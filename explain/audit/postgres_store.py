"""The audit store on PostgreSQL: the same contract, queries and records as the SQLite file,
for many scoring processes on many machines.

Writes go through the group-commit writer (``postgres_writer.py``): many decisions per
transaction, one durable commit, off the event loop. Reads use one autocommit connection
per reading thread (reconnected when the server went away); streams (warm start, exports)
read through a server-side cursor, so a large store is never held in memory. The layout —
monthly partitions, indexes, triggers refusing UPDATE/DELETE/TRUNCATE — is in
``postgres_schema.py``; retention drops whole months (:meth:`PostgresAuditStore.prune`).

psycopg is imported only when this store is opened (the ``postgres`` extra).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from explain.audit import postgres_schema
from explain.audit.challenger_sql import SqlChallengerLog
from explain.audit.group_commit import GroupCommitLog
from explain.audit.list_log import SqlListLog
from explain.audit.postgres_connect import connect, psycopg_module
from explain.audit.postgres_writer import PostgresWriter
from explain.audit.sql_reads import SqlReads
from explain.audit.store import AuditStore, AuditStoreError, Pruned, retention_cutoff_ms
from features.schema import datetime_to_epoch_ms
from features.url_redaction import redact

# The advisory lock that orders the writers of list changes (any fixed number of our own).
LIST_CHANGES_LOCK = 0x7269736B6C697374  # "risklist"


class PostgresAuditStore(GroupCommitLog, SqlReads, SqlListLog, SqlChallengerLog, AuditStore):
    """An :class:`AuditStore` in a PostgreSQL database (``postgresql://…``), its schema
    created (or checked) at open.

    ``commit_window_ms`` and ``max_batch`` are the group commit's, as for SQLite;
    ``connect_timeout_s`` bounds each connection attempt and ``statement_timeout_ms``
    each statement, so an unreachable or stuck server fails a request instead of hanging it.
    """

    mark = "%s"
    written = "seq"

    def __init__(
        self,
        url: str,
        *,
        commit_window_ms: float = 1.0,
        max_batch: int = 512,
        connect_timeout_s: int = 5,
        statement_timeout_ms: int = 30_000,
    ) -> None:
        if commit_window_ms < 0 or max_batch < 1 or connect_timeout_s < 1:
            raise ValueError("commit_window_ms must be >= 0, max_batch and connect_timeout_s >= 1")
        super().__init__()
        self._url = url
        self._where = redact(url)
        self._psycopg = psycopg_module()
        self._timeouts = {
            "connect_timeout_s": connect_timeout_s,
            "statement_timeout_ms": statement_timeout_ms,
        }
        self._lock = threading.Lock()
        self._readers: list[Any] = []
        self._local = threading.local()
        conn = connect(url, autocommit=True, **self._timeouts)
        try:
            postgres_schema.migrate(conn)
            # The current and next month exist before the first decision needs them.
            now_ms = datetime_to_epoch_ms(datetime.now(UTC))
            months = {postgres_schema.month_of(now_ms + days * 86_400_000) for days in (0, 31)}
            for table in postgres_schema.PARTITIONED:
                postgres_schema.create_partitions(conn, table, months)
        except self._psycopg.Error as exc:
            raise AuditStoreError(f"cannot open audit database {self._where}: {exc}") from exc
        finally:
            conn.close()
        self._writer = PostgresWriter(
            url,
            window_s=commit_window_ms / 1000.0,
            max_batch=max_batch,
            on_schema=self._schemas.__setitem__,
            **self._timeouts,
        )

    @property
    def location(self) -> str:
        """Where the store is, without its password."""
        return self._where

    # -- reading -------------------------------------------------------------------------

    def _reader(self) -> Any:
        if self._writer.closed:
            raise AuditStoreError(f"audit store {self._where} is {self._writer.closed_reason}")
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            conn = None  # the server restarted: connect again
        if conn is None:
            conn = connect(self._url, autocommit=True, **self._timeouts)
            with self._lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        # Once more on a new connection when this thread's was cut (the server restarted
        # since its last use): a read is safe to repeat, and only then is the cut known.
        for attempt in (1, 2):
            conn = self._reader()
            try:
                return list(conn.execute(sql, params).fetchall())
            except self._psycopg.Error as exc:
                if attempt == 1 and conn.broken:
                    continue
                raise AuditStoreError(f"cannot read audit database {self._where}: {exc}") from exc
        raise AssertionError("unreachable")

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        # A server-side cursor inside a read transaction: rows come in chunks and the
        # snapshot holds until the iterator is exhausted or closed. Its own connection, so
        # reads made while it is open (a report reading labels per page) are not inside it.
        conn = connect(self._url, autocommit=False, **self._timeouts)
        try:
            with conn.cursor(name="riskscore_stream") as cursor:
                cursor.itersize = 2048
                cursor.execute(sql, params)
                yield from cursor
        except self._psycopg.Error as exc:
            raise AuditStoreError(f"cannot read audit database {self._where}: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
                conn.close()

    def _rows_of(self, columns: str, transaction_ids: Sequence[str]) -> list[Any]:
        ids = list(dict.fromkeys(transaction_ids))
        if not ids:
            return []
        return self._fetchall(
            f"SELECT {columns} FROM decisions WHERE transaction_id = ANY(%s)", (ids,)
        )

    def latest_labels_of(self, transaction_ids: Sequence[str]) -> dict[str, bool]:
        ids = list(dict.fromkeys(transaction_ids))
        if not ids:
            return {}
        rows = self._fetchall(
            "SELECT DISTINCT ON (transaction_id) transaction_id, is_fraud FROM labels"
            " WHERE transaction_id = ANY(%s)"
            " ORDER BY transaction_id, received_at_ms DESC, id DESC",
            (ids,),
        )
        return {tid: bool(is_fraud) for tid, is_fraud in rows}

    def check_writable(self) -> None:
        """The server answers, is a primary (not a read-only standby) and lets this role
        insert decisions and labels."""
        if self._writer.closed:
            raise AuditStoreError(f"audit store {self._where} is {self._writer.closed_reason}")
        rows = self._fetchall(
            "SELECT NOT pg_is_in_recovery(), has_table_privilege('decisions', 'INSERT'),"
            " has_table_privilege('labels', 'INSERT')"
        )
        primary, decisions, labels = rows[0]
        if not primary:
            raise AuditStoreError(f"audit database {self._where} is a read-only standby")
        if not (decisions and labels):
            raise AuditStoreError(f"audit database {self._where}: this role may not insert")

    # -- list changes --------------------------------------------------------------------

    def _insert_list_changes(self, rows: list[tuple[Any, ...]]) -> list[int]:
        conn = connect(self._url, autocommit=True, **self._timeouts)
        try:
            with conn.transaction():
                # Ids from a sequence are handed out at insert, not at commit: without one
                # writer at a time, a change committed after a later id was polled would be
                # skipped by every running process (they apply ids above their version).
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIST_CHANGES_LOCK,))
                return [
                    int(
                        conn.execute(
                            "INSERT INTO list_changes"
                            " (list_name, value, op, reason, actor, changed_at_ms)"
                            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                            row,
                        ).fetchone()[0]
                    )
                    for row in rows
                ]
        except self._psycopg.Error as exc:
            raise AuditStoreError(f"cannot record list changes in {self._where}: {exc}") from exc
        finally:
            conn.close()

    # -- retention -----------------------------------------------------------------------

    def prune(self, older_than_days: int, *, now: datetime | None = None) -> Pruned:
        """Drop every monthly partition wholly older than ``older_than_days`` before
        ``now``: the one way decisions and labels leave this store (each drop logged, in
        the log and in ``retention_log``)."""
        cutoff_ms = retention_cutoff_ms(older_than_days, now)
        conn = connect(self._url, autocommit=True, **self._timeouts)
        try:
            dropped = postgres_schema.drop_partitions_before(conn, cutoff_ms)
        except self._psycopg.Error as exc:
            raise AuditStoreError(f"retention on {self._where} failed: {exc}") from exc
        finally:
            conn.close()
        counts = {
            t: sum(n for table, _, n in dropped if table == t) for t in ("decisions", "labels")
        }
        partitions = tuple(name for _, name, _ in dropped)
        return Pruned(cutoff_ms, counts["decisions"], counts["labels"], partitions)
