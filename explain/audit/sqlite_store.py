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

import json
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from explain.audit import compact
from explain.audit.columns import (
    HOUR_MS,
    LATENCY_BINS,
    LATENCY_BINS_PER_DECADE,
    UNLABELLED,
    DecisionColumns,
    PeriodAggregates,
    columns_of,
)
from explain.audit.sqlite_schema import migrate
from explain.audit.sqlite_writer import WRITER_THREAD_NAME, GroupCommitWriter, WriterStats
from explain.audit.store import (
    AuditStore,
    AuditStoreError,
    DecisionQuery,
    Outcome,
    PageKey,
    RebuildEvent,
    StoredVector,
)
from explain.decision import Decision
from explain.records import DecisionRecord, LabelRecord
from explain.schema import ExplanationSchema
from features.schema import datetime_to_epoch_ms

__all__ = ["WRITER_THREAD_NAME", "SQLiteAuditStore", "WriterStats"]

# What reading a decision back needs, in this order (see _decision()): the columns the
# compact record is completed with, then the two forms of the record.
_RECORD_COLUMNS = ", ".join(compact.COLUMNS) + ", record_json, record"
_RECENT_VECTORS = """
SELECT transaction_id, customer_id, event_time_ms, amount, record_json, record
FROM (
    SELECT transaction_id, customer_id, event_time_ms, amount, record_json, record,
           rowid AS written,
           row_number() OVER (
               PARTITION BY customer_id ORDER BY event_time_ms DESC, rowid DESC
           ) AS recency
    FROM decisions WHERE event_time_ms >= ?
)
WHERE recency <= ?
ORDER BY event_time_ms, written
"""

# What a period report aggregates (explain/audit/columns.py), then the position for the
# next chunk. The latest label comes with each row (one index lookup on labels).
_REPORT_COLUMNS = (
    "event_time_ms, action, stage, model_version, score, transaction_id, record_json, record,"
    " (SELECT l.is_fraud FROM labels AS l WHERE l.transaction_id = decisions.transaction_id"
    "  ORDER BY l.received_at_ms DESC, l.id DESC LIMIT 1),"
    " fallback, rowid"
)
# The latest label of each labelled transaction.
_LATEST_LABEL_EACH = (
    "SELECT transaction_id, is_fraud FROM (SELECT transaction_id, is_fraud, row_number()"
    " OVER (PARTITION BY transaction_id ORDER BY received_at_ms DESC, id DESC) AS recency"
    " FROM labels) WHERE recency = 1"
)
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
        self._busy_s = busy_timeout_ms / 1000.0
        self._lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        # Explanation schemas by row id: immutable once stored, so shared by all threads.
        self._schemas: dict[int, ExplanationSchema] = {}
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
        self._writer = GroupCommitWriter(
            conn,
            self._path,
            window_s=commit_window_ms / 1000.0,
            max_batch=max_batch,
            on_schema=self._schemas.__setitem__,
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the writer's counters."""
        return self._writer.stats

    @property
    def _closed(self) -> bool:
        return self._writer.closed

    @property
    def _closed_reason(self) -> str:
        return self._writer.closed_reason

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

    def submit(self, decision: Decision) -> Future[bool]:
        return self._writer.put([decision], single=True)

    def submit_many(self, decisions: Sequence[Decision]) -> Future[list[Outcome]]:
        return self._writer.put(list(decisions))

    def submit_label(self, label: LabelRecord) -> Future[None]:
        return self._writer.put(labels=[label], single=True)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted before this call is settled: durable, or its
        future holds the error. Raises :class:`AuditStoreError` on timeout."""
        self._refuse_on_writer("flush")
        try:
            marker = self._writer.put(single=True)
        except AuditStoreError:
            # Closing: the writer drains everything queued before it stops.
            self._writer.thread.join(timeout)
            if self._writer.thread.is_alive():
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
        self._writer.stop()
        self._writer.thread.join(timeout)
        if self._writer.thread.is_alive():
            raise AuditStoreError(f"audit writer still writing after {timeout} s; close again")
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def _refuse_on_writer(self, what: str) -> None:
        # A future's done-callback runs on the writer; waiting there for the writer would hang.
        if threading.current_thread() is self._writer.thread:
            raise AuditStoreError(f"cannot {what} the audit store from its writer thread")

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

    def _schema(self, schema_id: int) -> ExplanationSchema:
        schema = self._schemas.get(schema_id)
        if schema is None:
            rows = self._fetchall(
                "SELECT schema_json FROM explanation_schemas WHERE id = ?", (schema_id,)
            )
            if not rows:
                raise AuditStoreError(f"explanation schema {schema_id} is missing")
            schema = self._schemas[schema_id] = ExplanationSchema.from_json(rows[0][0])
        return schema

    def _decision(self, row: Sequence[Any]) -> DecisionRecord:
        """A row of ``_RECORD_COLUMNS`` as the full record, whichever form it was stored in."""
        try:
            n = len(compact.COLUMNS)
            if row[n]:
                return DecisionRecord.model_validate_json(row[n])
            record = compact.decode(row[n + 1])
            columns = dict(zip(compact.COLUMNS, row[:n], strict=True))
            return compact.to_record(columns, record, self._schema(record.schema_id))
        except ValueError as exc:  # also pydantic's and msgspec's validation errors
            raise AuditStoreError(f"stored decision does not parse: {exc}") from exc

    def _decisions(self, sql: str, params: tuple[Any, ...]) -> list[DecisionRecord]:
        return [self._decision(row) for row in self._fetchall(sql, params)]

    def get(self, transaction_id: str) -> DecisionRecord | None:
        found = self.get_many([transaction_id])
        return found.get(transaction_id)

    def get_many(self, transaction_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The stored decisions among these ids (one query per 500)."""
        rows = self._rows_of(_RECORD_COLUMNS, transaction_ids)
        return {row[0]: self._decision(row) for row in rows}

    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        where, params = _where(query)
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM decisions {where} ORDER BY event_time_ms, rowid LIMIT ?"
        )
        return self._decisions(sql, (*params, query.limit))

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
            f"SELECT {_RECORD_COLUMNS} FROM decisions {where}"
            " ORDER BY event_time_ms DESC, transaction_id DESC LIMIT ?"
        )
        return self._decisions(sql, (*params, query.limit))

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

    def period_aggregates(self, query: DecisionQuery, score_bins: int) -> PeriodAggregates | None:
        """GROUP BYs over the report columns of schema version 3; None when the period
        holds a row written before them (then the report reads records)."""
        where, params = _where(query, ["latency_us IS NULL"])
        if self._fetchall(f"SELECT 1 FROM decisions {where} LIMIT 1", tuple(params)):
            return None
        where, params = _where(query)
        p = tuple(params)
        hour = f"event_time_ms / {HOUR_MS:d}"
        # Microseconds / 10 is hundredths of a millisecond: the bins' lowest edge is 1.
        latency_bin = (
            f"min(max(CAST(floor(log10(max(latency_us / 10.0, 1.0)) * {LATENCY_BINS_PER_DECADE:d})"
            f" AS INTEGER), 0), {LATENCY_BINS - 1:d})"
        )
        # Two scans of the covering index (everything but the reasons; then the reasons,
        # whose combinations are few, so they are grouped whole and split here), and the
        # labelled decisions. One after the other: side by side in threads measured no
        # faster on two shared cores.
        counted = [
            (
                f"SELECT {hour}, action, stage, fallback, fallback_reason, model_version,"
                f" {latency_bin}, min(CAST(score * ? AS INTEGER), ?), count(*),"
                f" min(event_time_ms), max(event_time_ms)"
                f" FROM decisions {where} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
                (score_bins, score_bins - 1, *p),
            ),
            (
                "SELECT model_version, reason_positions, action, count(*)"
                f" FROM decisions {where} GROUP BY 1, 2, 3",
                p,
            ),
            (
                f"WITH latest AS ({_LATEST_LABEL_EACH}) SELECT f.event_time_ms / {HOUR_MS:d},"
                " f.action, latest.is_fraud, count(*) FROM latest JOIN"
                f" (SELECT transaction_id, event_time_ms, action FROM decisions {where}) AS f"
                " ON f.transaction_id = latest.transaction_id GROUP BY 1, 2, 3",
                p,
            ),
        ]
        rows, combinations, labels = [self._fetchall(*q) for q in counted]
        groups: Counter[tuple[int, str, str, int, str | None, str]] = Counter()
        latency: Counter[tuple[int, int]] = Counter()
        scores: Counter[int] = Counter()
        for h, action, stage, fell, reason, version, lat, score, n, _, _ in rows:
            groups[h, action, stage, fell, reason, version] += n
            latency[h, lat] += n
            scores[score] += n
        reasons: Counter[tuple[str, str]] = Counter()
        names: dict[str, tuple[str, ...]] = {}
        for version, positions, action, n in combinations:
            if version not in names:
                names[version] = self._feature_names_of(version)
            for position in positions.split(",") if positions else ():
                reasons[names[version][int(position)], action] += n
        first = min((row[9] for row in rows), default=None)
        last = max((row[10] for row in rows), default=None)
        return PeriodAggregates(
            [(*key, n) for key, n in groups.items()],
            [tuple(row) for row in labels],
            [(*key, n) for key, n in latency.items()],
            list(scores.items()),
            [(*key, n) for key, n in reasons.items()],
            first,
            last,
        )

    def _feature_names_of(self, model_version: str) -> tuple[str, ...]:
        """The feature order of a model version's decisions (from one of its records)."""
        rows = self._fetchall(
            "SELECT record FROM decisions WHERE model_version = ? AND record IS NOT NULL LIMIT 1",
            (model_version,),
        )
        if not rows:
            raise AuditStoreError(f"no compact record of model version {model_version!r}")
        return self._schema(compact.decode(rows[0][0]).schema_id).feature_names

    def decision_columns(
        self, query: DecisionQuery, chunk_size: int = 10_000, every: int = 1
    ) -> Iterator[DecisionColumns]:
        """The compact records' columns read straight from their MessagePack, in event-time
        order and chunks of ``chunk_size``: each chunk is its own statement, so no read
        snapshot stays open for the whole report (it would hold up WAL checkpoints)."""
        after: tuple[int, int] | None = None
        while True:
            extra: list[str] = []
            extra_params: list[Any] = []
            if every > 1:
                extra.append("rowid % ? = 0")
                extra_params.append(every)
            if after is not None:
                extra.append("(event_time_ms, rowid) > (?, ?)")
                extra_params += list(after)
            where, params = _where(query, extra, extra_params)
            rows = self._fetchall(
                f"SELECT {_REPORT_COLUMNS} FROM decisions {where}"
                " ORDER BY event_time_ms, rowid LIMIT ?",
                (*params, chunk_size),
            )
            if rows:
                yield from self._columns(rows)
            if len(rows) < chunk_size:
                return
            after = (rows[-1][0], rows[-1][-1])

    def _columns(self, rows: list[Any]) -> Iterator[DecisionColumns]:
        full: list[DecisionRecord] = []
        full_labels: dict[str, bool] = {}
        by_schema: dict[int, list[tuple[Any, compact.CompactRecord]]] = defaultdict(list)
        for row in rows:
            if row[6]:  # a version 1 row: its JSON record, read the slow way
                full.append(DecisionRecord.model_validate_json(row[6]))
                if row[8] is not None:
                    full_labels[row[5]] = bool(row[8])
                continue
            try:
                stored = compact.decode(row[7])
            except ValueError as exc:
                raise AuditStoreError(f"stored decision does not parse: {exc}") from exc
            by_schema[stored.schema_id].append((row, stored))
        for schema_id, group in by_schema.items():
            names = self._schema(schema_id).feature_names
            n, width = len(group), len(names)
            yield DecisionColumns(
                feature_names=names,
                event_time_ms=np.fromiter((r[0] for r, _ in group), np.int64, n),
                action=[r[1] for r, _ in group],
                stage=[r[2] for r, _ in group],
                model_version=[r[3] for r, _ in group],
                fallback=np.fromiter((r[9] for r, _ in group), bool, n),
                fallback_reason=[c.fallback_reason for _, c in group],
                score=np.fromiter((r[4] for r, _ in group), np.float64, n),
                latency_ms=np.fromiter((c.latency for _, c in group), np.float64, n)
                / compact.TICKS_PER_MS,
                reasons=[c.reason_indices for _, c in group],
                values=np.frombuffer(b"".join(c.values for _, c in group), "<f8").reshape(n, width),
                contributions=np.frombuffer(
                    b"".join(c.contributions for _, c in group), "<f8"
                ).reshape(n, width),
                is_fraud=np.fromiter(
                    (UNLABELLED if r[8] is None else r[8] for r, _ in group), np.int8, n
                ),
            )
        if full:
            yield from columns_of(full, full_labels)

    def labels(self, transaction_id: str) -> list[LabelRecord]:
        rows = self._fetchall(
            "SELECT record_json FROM labels WHERE transaction_id = ? ORDER BY received_at_ms, id",
            (transaction_id,),
        )
        return [LabelRecord.model_validate_json(row[0]) for row in rows]

    def rebuild_events(self, since_epoch_ms: int) -> Iterator[RebuildEvent]:
        sql = (
            "SELECT transaction_id, customer_id, terminal_id, event_time_ms, local_time_ms, amount"
            " FROM decisions WHERE event_time_ms >= ? ORDER BY event_time_ms, rowid"
        )
        for row in self._stream(sql, (since_epoch_ms,)):
            yield RebuildEvent(*row)

    def recent_feature_vectors(
        self, since_epoch_ms: int, per_customer: int
    ) -> Iterator[StoredVector]:
        for tid, customer, epoch_ms, amount, record_json, record in self._stream(
            _RECENT_VECTORS, (since_epoch_ms, per_customer)
        ):
            values = self._feature_values(record_json, record)
            yield StoredVector(tid, customer, int(epoch_ms), float(amount), values)

    def vectors_of(self, transaction_ids: Sequence[str]) -> dict[str, StoredVector]:
        """The stored payments among these ids with their feature values as decided."""
        out: dict[str, StoredVector] = {}
        columns = "transaction_id, customer_id, event_time_ms, amount, record_json, record"
        for tid, customer, epoch_ms, amount, record_json, record in self._rows_of(
            columns, transaction_ids
        ):
            values = self._feature_values(record_json, record)
            out[tid] = StoredVector(tid, customer, int(epoch_ms), float(amount), values)
        return out

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

    def _feature_values(self, record_json: str, record: bytes | None) -> dict[str, float]:
        if record_json:
            stored = json.loads(record_json)["explanation"]["attributions"]
            return {a["feature"]: float(a["value"]) for a in stored}
        assert record is not None  # the schema's CHECK: one form or the other
        compact_record = compact.decode(record)
        names = self._schema(compact_record.schema_id).feature_names
        return dict(zip(names, compact.feature_values(compact_record).tolist(), strict=True))

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
        # A column since schema version 2; version 1 rows have it only in their JSON.
        clauses.append(
            "(CASE WHEN fallback IS NOT NULL THEN fallback"
            " ELSE json_extract(record_json, '$.fallback') END) = ?"
        )
        params.append(int(query.fallback))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
