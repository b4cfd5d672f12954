"""The audit store on one SQLite file: group-committed writes, readers beside the writer.

One writer thread owns the write connection. Submissions queue up; the writer gathers
whatever arrives within ``commit_window_ms`` of the first (at most ``max_batch``), writes the
lot in one transaction and syncs once, and only then resolves the futures, so a future that
completes means the record survives a crash or power loss. Under load, one fsync is shared by
many decisions instead of each paying for its own.

Reads use one connection per reading thread; WAL mode lets them see the last commit while
the writer works.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from explain.audit.sqlite_schema import migrate
from explain.audit.store import (
    AuditStore,
    AuditStoreError,
    DecisionQuery,
    PageKey,
    ReplayEvent,
    StoredVector,
)
from explain.records import DecisionRecord, LabelRecord
from features.schema import datetime_to_epoch_ms

WRITER_THREAD_NAME = "riskscore-audit-writer"

# INSERT ... WHERE NOT EXISTS rather than INSERT OR IGNORE: the schema's trigger refuses a
# conflicting insert outright (so that nobody can REPLACE history), which would abort the
# whole batch; skipping an existing id here keeps a retry from failing its neighbours.
_INSERT_DECISION = """
INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,
    decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,
    record_json)
SELECT :transaction_id, :request_sha256, :event_time_ms, :local_time_ms, :decided_at_ms,
    :customer_id, :terminal_id, :amount, :action, :stage, :score, :model_version, :record_json
WHERE NOT EXISTS (SELECT 1 FROM decisions WHERE transaction_id = :transaction_id)
"""
_INSERT_LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json)
VALUES (:transaction_id, :is_fraud, :labelled_at_ms, :received_at_ms, :record_json)
"""
_RECENT_VECTORS = """
SELECT transaction_id, customer_id, event_time_ms, amount,
       json_extract(record_json, '$.explanation.attributions')
FROM (
    SELECT transaction_id, customer_id, event_time_ms, amount, record_json, rowid AS written,
           row_number() OVER (
               PARTITION BY customer_id ORDER BY event_time_ms DESC, rowid DESC
           ) AS recency
    FROM decisions WHERE event_time_ms >= ?
)
WHERE recency <= ?
ORDER BY event_time_ms, written
"""

_LATEST_LABELS = """
SELECT transaction_id, is_fraud FROM (
    SELECT l.transaction_id, l.is_fraud, d.event_time_ms, d.rowid AS decision_order,
        row_number() OVER (
            PARTITION BY l.transaction_id ORDER BY l.received_at_ms DESC, l.id DESC
        ) AS recency
    FROM labels AS l JOIN decisions AS d ON d.transaction_id = l.transaction_id
    WHERE d.event_time_ms >= ?
)
WHERE recency = 1
ORDER BY event_time_ms, decision_order
"""


@dataclass(frozen=True)
class WriterStats:
    """What the writer has done: ``records`` counts records in committed batches, including
    duplicates that resolved False; each commit is one sync."""

    commits: int = 0
    records: int = 0
    failed_batches: int = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    record: DecisionRecord | LabelRecord | None  # None marks a flush
    future: Future[Any]


def _settle(future: Future[Any], result: Any = None, error: Exception | None = None) -> None:
    # A future its caller cancelled before the writer claimed it is skipped, but its record
    # is still written: cancelling a wait does not withdraw a decision already taken.
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _row(record: DecisionRecord | LabelRecord) -> tuple[str, dict[str, Any]]:
    if isinstance(record, DecisionRecord):
        tx = record.transaction
        return _INSERT_DECISION, {
            "transaction_id": tx.transaction_id,
            "request_sha256": record.request_sha256,
            "event_time_ms": tx.epoch_ms,
            "local_time_ms": tx.local_epoch_ms,
            "decided_at_ms": datetime_to_epoch_ms(record.decided_at),
            "customer_id": tx.customer_id,
            "terminal_id": tx.terminal_id,
            "amount": tx.amount,
            "action": record.action,
            "stage": record.stage,
            "score": record.score,
            "model_version": record.model_version,
            "record_json": record.model_dump_json(),
        }
    received_ms = datetime_to_epoch_ms(record.received_at)
    labelled = record.labelled_at
    return _INSERT_LABEL, {
        "transaction_id": record.transaction_id,
        "is_fraud": int(record.is_fraud),
        "labelled_at_ms": received_ms if labelled is None else datetime_to_epoch_ms(labelled),
        "received_at_ms": received_ms,
        "record_json": record.model_dump_json(),
    }


class SQLiteAuditStore(AuditStore):
    """An :class:`AuditStore` in one SQLite file (created with its parent directories).

    ``commit_window_ms`` bounds how long the first record of a batch waits for company;
    ``max_batch`` bounds a batch's size; ``busy_timeout_ms`` is how long any connection
    waits for a lock held by another process before giving up.
    """

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
        self._window_s = commit_window_ms / 1000.0
        self._max_batch = max_batch
        self._busy_s = busy_timeout_ms / 1000.0
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        # Guards _closed together with putting on the queue: nothing can be queued behind
        # the stop marker, so no future is ever left pending.
        self._lock = threading.Lock()
        self._closed = False
        self._closed_reason = "closed"
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._stats = WriterStats()
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
        except sqlite3.Error as exc:
            conn.close()
            raise AuditStoreError(f"cannot open audit store {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn
        self._writer = threading.Thread(target=self._run, name=WRITER_THREAD_NAME, daemon=True)
        self._writer.start()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the writer's counters."""
        return self._stats

    def __enter__(self) -> SQLiteAuditStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def submit(self, record: DecisionRecord) -> Future[bool]:
        return self._enqueue(record)

    def submit_label(self, label: LabelRecord) -> Future[None]:
        return self._enqueue(label)

    def _enqueue(self, record: DecisionRecord | LabelRecord | None) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise AuditStoreError(f"audit store {self._path} is {self._closed_reason}")
            self._queue.put(_Pending(record, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted before this call is settled: durable, or its
        future holds the error. Raises :class:`AuditStoreError` on timeout."""
        self._refuse_on_writer("flush")
        try:
            marker = self._enqueue(None)
        except AuditStoreError:
            # Closing: the writer drains everything queued before it stops.
            self._writer.join(timeout)
            if self._writer.is_alive():
                raise AuditStoreError(f"flush did not complete within {timeout} s") from None
            return
        try:
            marker.result(timeout)
        except TimeoutError as exc:
            raise AuditStoreError(f"flush did not complete within {timeout} s") from exc

    def close(self, timeout: float | None = None) -> None:
        """Write everything already submitted, stop the writer and close every connection.
        Idempotent; a later call also waits for a writer an earlier one timed out on."""
        self._refuse_on_writer("close")
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._writer.join(timeout)
        if self._writer.is_alive():
            raise AuditStoreError(f"audit writer still writing after {timeout} s; close again")
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def _refuse_on_writer(self, what: str) -> None:
        # A future's done-callback runs on the writer; waiting there for the writer would hang.
        if threading.current_thread() is self._writer:
            raise AuditStoreError(f"cannot {what} the audit store from its writer thread")

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch, stop = self._collect(first)
                try:
                    self._write(batch)
                except Exception as exc:  # a bug in _write must not leave its callers waiting
                    for item in batch:
                        with contextlib.suppress(InvalidStateError):
                            _settle(
                                item.future, error=AuditStoreError(f"audit write failed: {exc}")
                            )
        finally:
            # After a normal stop the queue is already empty. If the loop broke instead,
            # refuse new work and fail what is queued rather than let anyone wait forever.
            with self._lock:
                if not self._closed:
                    self._closed, self._closed_reason = True, "closed: its writer stopped"
                leftovers: list[_Pending] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        queued = self._queue.get_nowait()
                        if queued is not None:
                            leftovers.append(queued)
            for pending in leftovers:
                pending.future.set_running_or_notify_cancel()
                _settle(pending.future, error=AuditStoreError("audit writer stopped"))
            self._write_conn.close()

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_batch and first.record is not None:
            remaining = deadline - time.monotonic()
            try:
                # Past the window, still take what is already waiting: that costs no latency.
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            if item.record is None:  # someone is waiting on a flush: do not make them wait
                break
        return batch, False

    def _write(self, batch: list[_Pending]) -> None:
        for item in batch:
            # Once running, a future can no longer be cancelled under us.
            item.future.set_running_or_notify_cancel()
        rows: list[tuple[_Pending, str, dict[str, Any]]] = []
        for item in batch:
            if item.record is None:
                continue
            try:
                rows.append((item, *_row(item.record)))
            except Exception as exc:  # one unserialisable record must not sink its batch
                _settle(item.future, error=AuditStoreError(f"cannot serialise record: {exc}"))
        try:
            self._commit_and_settle(rows)
        except sqlite3.IntegrityError:
            # One record breaking a constraint must not sink the others it was grouped
            # with: write them one by one, so only the bad one fails.
            for row in rows:
                with contextlib.suppress(sqlite3.IntegrityError):
                    self._commit_and_settle([row])
        for item in batch:
            if item.record is None:
                _settle(item.future)

    def _commit_and_settle(self, rows: list[tuple[_Pending, str, dict[str, Any]]]) -> None:
        """Write ``rows`` in one transaction and settle their futures. A constraint error
        on a group is re-raised (after rollback) so the caller can retry row by row."""
        if not rows:
            return
        conn = self._write_conn
        inserted: list[bool] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for _, sql, params in rows:
                inserted.append(conn.execute(sql, params).rowcount == 1)
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._stats = replace(self._stats, failed_batches=self._stats.failed_batches + 1)
            if isinstance(exc, sqlite3.IntegrityError) and len(rows) > 1:
                raise
            message = f"audit batch of {len(rows)} records not written to {self._path}: {exc}"
            for item, _, _ in rows:
                error = AuditStoreError(message)
                error.__cause__ = exc
                _settle(item.future, error=error)
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            return
        stats = self._stats
        self._stats = replace(stats, commits=stats.commits + 1, records=stats.records + len(rows))
        for (item, _, _), was_new in zip(rows, inserted, strict=True):
            _settle(item.future, was_new if isinstance(item.record, DecisionRecord) else None)

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

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot read audit store {self._path}: {exc}") from exc

    def _stream(self, sql: str, params: tuple[Any, ...]) -> Iterator[Any]:
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

    @staticmethod
    def _decision(record_json: str) -> DecisionRecord:
        try:
            return DecisionRecord.model_validate_json(record_json)
        except ValueError as exc:
            raise AuditStoreError(f"stored decision does not parse: {exc}") from exc

    def get(self, transaction_id: str) -> DecisionRecord | None:
        rows = self._fetchall(
            "SELECT record_json FROM decisions WHERE transaction_id = ?", (transaction_id,)
        )
        return self._decision(rows[0][0]) if rows else None

    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        where, params = _where(query)
        sql = f"SELECT record_json FROM decisions {where} ORDER BY event_time_ms, rowid LIMIT ?"
        return [self._decision(row[0]) for row in self._fetchall(sql, (*params, query.limit))]

    def page(self, query: DecisionQuery, after: PageKey | None = None) -> list[DecisionRecord]:
        # Keyset paging, not OFFSET: each page costs the same however deep it is, and
        # decisions inserted meanwhile cannot shift later pages.
        extra: list[str] = []
        extra_params: list[Any] = []
        if after is not None:
            extra.append("(event_time_ms, transaction_id) < (?, ?)")
            extra_params += [after.event_time_ms, after.transaction_id]
        where, params = _where(query, extra, extra_params)
        sql = (
            f"SELECT record_json FROM decisions {where}"
            " ORDER BY event_time_ms DESC, transaction_id DESC LIMIT ?"
        )
        return [self._decision(row[0]) for row in self._fetchall(sql, (*params, query.limit))]

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

    def labels(self, transaction_id: str) -> list[LabelRecord]:
        rows = self._fetchall(
            "SELECT record_json FROM labels WHERE transaction_id = ? ORDER BY received_at_ms, id",
            (transaction_id,),
        )
        return [LabelRecord.model_validate_json(row[0]) for row in rows]

    def replay_events(self, since_epoch_ms: int) -> Iterator[ReplayEvent]:
        sql = (
            "SELECT transaction_id, customer_id, terminal_id, event_time_ms, local_time_ms, amount"
            " FROM decisions WHERE event_time_ms >= ? ORDER BY event_time_ms, rowid"
        )
        for row in self._stream(sql, (since_epoch_ms,)):
            yield ReplayEvent(*row)

    def recent_feature_vectors(
        self, since_epoch_ms: int, per_customer: int
    ) -> Iterator[StoredVector]:
        for tid, customer, epoch_ms, amount, attributions in self._stream(
            _RECENT_VECTORS, (since_epoch_ms, per_customer)
        ):
            values = {a["feature"]: float(a["value"]) for a in json.loads(attributions)}
            yield StoredVector(tid, customer, int(epoch_ms), float(amount), values)

    def latest_event_ms(self) -> int | None:
        rows = self._fetchall("SELECT max(event_time_ms) FROM decisions")
        return None if rows[0][0] is None else int(rows[0][0])

    def latest_labels(self, since_epoch_ms: int) -> Iterator[tuple[str, bool]]:
        """The most recently received label (by ``received_at``, then arrival) of each
        labelled transaction, in the decisions' event-time order."""
        for transaction_id, is_fraud in self._stream(_LATEST_LABELS, (since_epoch_ms,)):
            yield transaction_id, bool(is_fraud)

    def counts(self) -> dict[str, int]:
        """How many decisions and labels are durable, for monitoring."""
        rows = self._fetchall(
            "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM labels)"
        )
        return {"decisions": int(rows[0][0]), "labels": int(rows[0][1])}

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


def _where(
    query: DecisionQuery, clauses: list[str] | None = None, params: list[Any] | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (possibly empty) and its parameters for a query's filters."""
    if query.limit < 0:
        raise ValueError("limit must be >= 0")
    clauses = list(clauses or [])
    params = list(params or [])
    if query.start is not None:
        clauses.append("event_time_ms >= ?")
        params.append(datetime_to_epoch_ms(query.start))
    if query.end is not None:
        clauses.append("event_time_ms < ?")
        params.append(datetime_to_epoch_ms(query.end))
    for column in ("action", "customer_id", "stage"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.min_score is not None:
        clauses.append("score >= ?")
        params.append(query.min_score)
    if query.fallback is not None:
        # Not a column of its own (the schema predates the filter): read from the record.
        clauses.append("json_extract(record_json, '$.fallback') = ?")
        params.append(int(query.fallback))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
