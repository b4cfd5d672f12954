"""The reads both SQL stores make the same way: the same columns, the same queries, only
the parameter mark (``?``/``%s``) and the column giving the order of writing (SQLite's
``rowid``, PostgreSQL's ``seq``) differ. Each backend supplies how it fetches and streams
rows, looks up ids in bulk, and reads the latest labels of a set of ids."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from explain.audit import filters
from explain.audit.record_rows import RECORD_COLUMNS, VECTOR_COLUMNS, RecordRows
from explain.audit.store import (
    DecisionQuery,
    PageKey,
    RebuildEvent,
    StoredVector,
    TrainingRow,
)
from explain.records import DecisionRecord, LabelRecord

# Ids per ``IN (...)`` list: far below SQLite's 32,766 bound variables.
_IDS_PER_QUERY = 500


class SqlReads(RecordRows):
    """Decisions and labels read back (a mixin beside :class:`~explain.audit.store.AuditStore`)."""

    mark: ClassVar[str]  # the driver's parameter mark
    written: ClassVar[str]  # the column holding the order of writing
    fallback: ClassVar[str] = "fallback"  # how the fallback flag is read

    @abstractmethod
    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of a query (errors as AuditStoreError)."""

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """The rows of a query in chunks, never all in memory."""

    @abstractmethod
    def _rows_of(self, columns: str, transaction_ids: Sequence[str]) -> list[Any]:
        """``columns`` of the stored decisions among these ids."""

    def _schema_json(self, schema_id: int) -> str | None:
        rows = self._fetchall(
            f"SELECT schema_json FROM explanation_schemas WHERE id = {self.mark}", (schema_id,)
        )
        return str(rows[0][0]) if rows else None

    def _decisions(self, sql: str, params: Sequence[Any]) -> list[DecisionRecord]:
        return [self._decision(row) for row in self._fetchall(sql, params)]

    def get(self, transaction_id: str) -> DecisionRecord | None:
        return self.get_many([transaction_id]).get(transaction_id)

    def get_many(self, transaction_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        rows = self._rows_of(RECORD_COLUMNS, transaction_ids)
        return {row[0]: self._decision(row) for row in rows}

    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        where, params = filters.where(query, mark=self.mark, fallback=self.fallback)
        sql = (
            f"SELECT {RECORD_COLUMNS} FROM decisions {where}"
            f" ORDER BY event_time_ms, {self.written} LIMIT {self.mark}"
        )
        return self._decisions(sql, (*params, query.limit))

    def page(self, query: DecisionQuery, after: PageKey | None = None) -> list[DecisionRecord]:
        # Keyset paging, not OFFSET: each page costs the same however deep it is, and
        # decisions inserted meanwhile cannot shift later pages.
        extra: list[str] = []
        extra_params: list[Any] = []
        if after is not None:
            extra.append(f"(event_time_ms, transaction_id) < ({self.mark}, {self.mark})")
            extra_params += [after.event_time_ms, after.transaction_id]
        where, params = filters.where(
            query, extra, extra_params, mark=self.mark, fallback=self.fallback
        )
        sql = (
            f"SELECT {RECORD_COLUMNS} FROM decisions {where}"
            f" ORDER BY event_time_ms DESC, transaction_id DESC LIMIT {self.mark}"
        )
        return self._decisions(sql, (*params, query.limit))

    def labels(self, transaction_id: str) -> list[LabelRecord]:
        rows = self._fetchall(
            f"SELECT record_json FROM labels WHERE transaction_id = {self.mark}"
            " ORDER BY received_at_ms, id",
            (transaction_id,),
        )
        return [LabelRecord.model_validate_json(row[0]) for row in rows]

    def labels_by_transaction(self, transaction_ids: Sequence[str]) -> dict[str, list[LabelRecord]]:
        """The labels of many decisions in one query (a search page shows up to 1,000
        decisions: one query each would cost a round trip per row on PostgreSQL)."""
        found: dict[str, list[LabelRecord]] = {tid: [] for tid in transaction_ids}
        ids = list(found)
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            marks = ", ".join([self.mark] * len(chunk))
            rows = self._fetchall(
                f"SELECT transaction_id, record_json FROM labels"
                f" WHERE transaction_id IN ({marks}) ORDER BY received_at_ms, id",
                tuple(chunk),
            )
            for tid, record_json in rows:
                found[tid].append(LabelRecord.model_validate_json(record_json))
        return found

    def rebuild_events(
        self, since_epoch_ms: int, written_after: int | None = None
    ) -> Iterator[RebuildEvent]:
        where, params = f"event_time_ms >= {self.mark}", [since_epoch_ms]
        if written_after is not None:
            where += f" AND {self.written} > {self.mark}"
            params.append(written_after)
        sql = (
            "SELECT transaction_id, customer_id, terminal_id, event_time_ms, local_time_ms, amount"
            f" FROM decisions WHERE {where} ORDER BY event_time_ms, {self.written}"
        )
        for tid, customer, terminal, epoch_ms, local_ms, amount in self._stream(sql, params):
            yield RebuildEvent(tid, customer, terminal, int(epoch_ms), int(local_ms), amount)

    def recent_feature_vectors(
        self, since_epoch_ms: int, per_customer: int
    ) -> Iterator[StoredVector]:
        sql = f"""
SELECT {VECTOR_COLUMNS}
FROM (
    SELECT {VECTOR_COLUMNS}, {self.written} AS written,
           row_number() OVER (
               PARTITION BY customer_id ORDER BY event_time_ms DESC, {self.written} DESC
           ) AS recency
    FROM decisions WHERE event_time_ms >= {self.mark}
) AS recent
WHERE recency <= {self.mark}
ORDER BY event_time_ms, written
"""
        for row in self._stream(sql, (since_epoch_ms, per_customer)):
            yield self._vector(row)

    def vectors_of(self, transaction_ids: Sequence[str]) -> dict[str, StoredVector]:
        """The stored payments among these ids with their feature values as decided."""
        vectors = map(self._vector, self._rows_of(VECTOR_COLUMNS, transaction_ids))
        return {vector.transaction_id: vector for vector in vectors}

    def _vector(self, row: Sequence[Any]) -> StoredVector:
        tid, customer, epoch_ms, amount, record_json, record = row
        values = self._feature_values(record_json, record)
        return StoredVector(tid, customer, int(epoch_ms), float(amount), values)

    def written_mark(self) -> int | None:
        rows = self._fetchall(f"SELECT max({self.written}) FROM decisions")
        return None if rows[0][0] is None else int(rows[0][0])

    def training_rows(
        self, start_ms: int, end_ms: int, labels_known_by_ms: int
    ) -> Iterator[TrainingRow]:
        # Only the labels of the window's decisions are ranked, and only those known by
        # the cut-off: a label that came later was not there to train on.
        sql = f"""
SELECT d.transaction_id, d.customer_id, d.event_time_ms, d.action, d.score, d.model_version,
       d.record_json, d.record, latest.is_fraud
FROM decisions AS d
LEFT JOIN (
    SELECT l.transaction_id, l.is_fraud,
        row_number() OVER (
            PARTITION BY l.transaction_id ORDER BY l.received_at_ms DESC, l.id DESC
        ) AS recency
    FROM labels AS l JOIN decisions AS w ON w.transaction_id = l.transaction_id
    WHERE l.labelled_at_ms <= {self.mark}
      AND w.event_time_ms >= {self.mark} AND w.event_time_ms < {self.mark}
) AS latest ON latest.transaction_id = d.transaction_id AND latest.recency = 1
WHERE d.event_time_ms >= {self.mark} AND d.event_time_ms < {self.mark}
ORDER BY d.event_time_ms, d.{self.written}
"""
        params = (labels_known_by_ms, start_ms, end_ms, start_ms, end_ms)
        for (
            tid,
            customer,
            epoch_ms,
            action,
            score,
            version,
            record_json,
            record,
            fraud,
        ) in self._stream(sql, params):
            names, values = self._feature_array(record_json, record)
            yield TrainingRow(
                tid,
                customer,
                int(epoch_ms),
                action,
                float(score),
                version,
                names,
                values,
                None if fraud is None else bool(fraud),
            )

    def latest_event_ms(self) -> int | None:
        rows = self._fetchall("SELECT max(event_time_ms) FROM decisions")
        return None if rows[0][0] is None else int(rows[0][0])

    def latest_labels(self, since_epoch_ms: int) -> Iterator[tuple[str, bool]]:
        """The most recently received label (by ``received_at``, then arrival) of each
        labelled transaction, in the decisions' event-time order."""
        sql = f"""
SELECT transaction_id, is_fraud FROM (
    SELECT l.transaction_id, l.is_fraud, d.event_time_ms, d.{self.written} AS decision_order,
        row_number() OVER (
            PARTITION BY l.transaction_id ORDER BY l.received_at_ms DESC, l.id DESC
        ) AS recency
    FROM labels AS l JOIN decisions AS d ON d.transaction_id = l.transaction_id
    WHERE d.event_time_ms >= {self.mark}
) AS latest
WHERE recency = 1
ORDER BY event_time_ms, decision_order
"""
        for transaction_id, is_fraud in self._stream(sql, (since_epoch_ms,)):
            yield transaction_id, bool(is_fraud)

    def counts(self) -> dict[str, int]:
        """How many decisions and labels are durable, for monitoring."""
        rows = self._fetchall(
            "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM labels)"
        )
        return {"decisions": int(rows[0][0]), "labels": int(rows[0][1])}
