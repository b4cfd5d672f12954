"""The PostgreSQL audit store's writer: group commit (``group_commit.py``) over psycopg.

Transaction ids are unique across partitions only by the writer's care (a partitioned
table's key must include the partition key): before it checks which ids are stored, the
writer takes a transaction-scoped advisory lock per id, in one sorted order, so two
processes writing the same id serialise and the second finds the first's row. Rows go in
by ``COPY``; the commit is durable (``synchronous_commit=on``) before any future settles.

A connection found cut (the server restarted since the last batch) is replaced and the
batch written once more; a server that stays down fails the batch — its callers get
:class:`AuditStoreError`, the service's ``503 audit_unavailable`` — and the next batch
tries to connect again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from explain.audit import challenger_log, postgres_schema
from explain.audit.group_commit import Group, GroupCommitWriter
from explain.audit.postgres_connect import connect, psycopg_module
from explain.schema import ExplanationSchema
from features.schema import datetime_to_epoch_ms
from features.url_redaction import redact

_DECISION_COLUMNS = (
    "transaction_id, request_sha256, event_time_ms, local_time_ms, decided_at_ms, customer_id,"
    " terminal_id, amount, action, stage, score, model_version, fallback, record, latency_us,"
    " reason_positions, fallback_reason, original_amount, original_currency, rate_version"
)
_LABEL_COLUMNS = "transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json"
# ON CONFLICT: a row already stored for the same decision and version stands.
_INSERT_CHALLENGER = (
    f"INSERT INTO challenger_scores ({challenger_log.COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
# One lock per id, taken in hash order (the same in every process: no deadlock).
_LOCK_IDS = """
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended(t, 0) AS h FROM unnest(%s::text[]) AS t ORDER BY h
) AS ids
"""


class PostgresWriter(GroupCommitWriter):
    """Owns the write connection to the PostgreSQL audit database and the writer thread."""

    def __init__(
        self,
        url: str,
        *,
        window_s: float,
        max_batch: int,
        connect_timeout_s: int,
        statement_timeout_ms: int,
        on_schema: Callable[[int, ExplanationSchema], None],
    ) -> None:
        psycopg = psycopg_module()
        self.database_errors = (psycopg.Error,)
        self.integrity_errors = (psycopg.IntegrityError,)
        super().__init__(redact(url), window_s=window_s, max_batch=max_batch, on_schema=on_schema)
        self._url = url
        self._timeouts = {
            "connect_timeout_s": connect_timeout_s,
            "statement_timeout_ms": statement_timeout_ms,
        }
        self._conn: Any = None
        self._months: dict[str, set[int]] | None = None  # partitions known to exist
        self._connection()  # fail at open, not at the first decision
        self.start()

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self._conn = connect(self._url, autocommit=False, **self._timeouts)
            self._months = None
        return self._conn

    def _prepare(self, batch: Sequence[Group]) -> None:
        conn = self._connection()
        if self._months is None:
            self._months = {
                table: postgres_schema.existing_months(conn, table)
                for table in postgres_schema.PARTITIONED
            }
            conn.commit()
        month_of = postgres_schema.month_of
        wanted = {
            "decisions": {month_of(d.transaction.epoch_ms) for g in batch for d in g.decisions},
            "labels": {
                month_of(datetime_to_epoch_ms(label.received_at))
                for g in batch
                for label in g.labels
            },
            "challenger_scores": {month_of(c.event_time_ms) for g in batch for c in g.challengers},
        }
        for table, months in wanted.items():
            missing = months - self._months[table]
            if missing:
                postgres_schema.create_partitions(conn, table, missing)
                self._months[table] |= missing

    def _commit(self, batch: list[Group], outcomes: dict[int, list[Any]]) -> None:
        try:
            super()._commit(batch, outcomes)
        except self.database_errors:
            if self._conn is None or not self._conn.broken:
                raise
            # The connection was cut (the server restarted since the last batch; only
            # using it tells). Once more on a new one: safe even if the cut came during
            # COMMIT, since the id check then finds the rows and answers False for them.
            super()._commit(batch, outcomes)

    def _begin(self) -> None:
        self._connection()  # psycopg opens the transaction with the first statement

    def _stored_ids(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        self._conn.execute(_LOCK_IDS, (ids,))
        rows = self._conn.execute(
            "SELECT transaction_id FROM decisions WHERE transaction_id = ANY(%s)", (ids,)
        ).fetchall()
        return {row[0] for row in rows}

    def _find_or_insert_schema(self, schema: ExplanationSchema) -> int:
        # ON CONFLICT waits for another process inserting the same key, then finds its row.
        self._conn.execute(
            "INSERT INTO explanation_schemas (key, schema_json) VALUES (%s, %s)"
            " ON CONFLICT (key) DO NOTHING",
            (schema.key, schema.to_json()),
        )
        row = self._conn.execute(
            "SELECT id FROM explanation_schemas WHERE key = %s", (schema.key,)
        ).fetchone()
        return int(row[0])

    def _insert(
        self,
        decisions: list[tuple[Any, ...]],
        labels: list[tuple[Any, ...]],
        challengers: list[tuple[Any, ...]],
    ) -> None:
        cursor = self._conn.cursor()
        if challengers:
            cursor.executemany(_INSERT_CHALLENGER, challengers)
        if decisions:
            with cursor.copy(f"COPY decisions ({_DECISION_COLUMNS}) FROM STDIN") as copy:
                for row in decisions:
                    copy.write_row(row)
        if labels:
            with cursor.copy(f"COPY labels ({_LABEL_COLUMNS}) FROM STDIN") as copy:
                for row in labels:
                    copy.write_row(row)

    def _commit_transaction(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        # A failed batch may have met a partition that retention dropped: look again.
        self._months = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()

    def _close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
