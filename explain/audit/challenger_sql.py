"""The SQL of :class:`~explain.audit.challenger_log.ChallengerLog`, shared by SQLite and
PostgreSQL (only the parameter mark differs); rows are written by the group-commit writer
(``group_commit.py``) in transactions of their own, and stored compact
(``challenger_codec.py``): reading completes them from their decisions' records."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, ClassVar

from explain.audit import challenger_codec, compact
from explain.audit.challenger_codec import COLUMNS
from explain.audit.challenger_log import (
    ChallengerLog,
    ChallengerPair,
    ChallengerRow,
    ChallengerScore,
    ShadowCounts,
    Shadowed,
)
from explain.audit.record_rows import RECORD_COLUMNS
from explain.audit.store import AuditStoreError, Outcome
from explain.records import DecisionRecord
from explain.schema import ExplanationSchema
from features.schema import datetime_to_epoch_ms
from models.thresholds import action_between

# Rows of pairs are read in chunks this big; each chunk's labels in one query.
_CHUNK = 500
_C_COLUMNS = ", ".join(f"c.{c.strip()}" for c in COLUMNS.split(","))


class SqlChallengerLog(ChallengerLog):
    """:class:`ChallengerLog` in the ``challenger_scores`` table; a backend supplies its
    reads, its stream, its latest labels and the group-commit writer (``_writer``)."""

    mark: ClassVar[str]
    _writer: Any  # explain.audit.group_commit.GroupCommitWriter

    @abstractmethod
    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]: ...

    @abstractmethod
    def _decision(self, row: Sequence[Any]) -> DecisionRecord: ...

    @abstractmethod
    def latest_labels_of(self, transaction_ids: Sequence[str]) -> dict[str, bool]: ...

    @abstractmethod
    def _schema(self, schema_id: int) -> ExplanationSchema: ...

    def submit_challenger_scores(self, scores: Sequence[ChallengerScore]) -> Future[list[Outcome]]:
        return self.submit_challenger_rows(
            [
                ChallengerRow(
                    s.transaction_id,
                    s.model_version,
                    s.event_time_ms,
                    s.score,
                    s.action,
                    s.review_threshold,
                    s.decline_threshold,
                    challenger_codec.encode_text(s),
                    s.sequence_score,
                    s.scored_at_ms,
                )
                for s in scores
            ]
        )

    def submit_challenger_rows(self, rows: Sequence[ChallengerRow]) -> Future[list[Outcome]]:
        future: Future[list[Outcome]] = self._writer.put(challengers=list(rows))
        return future

    def _score_of(self, row: Sequence[Any], decision_record: Any) -> ChallengerScore:
        """A row (``COLUMNS``) completed with its decision's compact record (None: the
        decision is stored whole, so the row can only be one kept as text)."""
        if decision_record is None:
            return challenger_codec.to_score(row, None, None)
        record = compact.decode(bytes(decision_record))
        return challenger_codec.to_score(
            row, compact.feature_values(record), self._schema(record.schema_id)
        )

    def challenger_scores_of(self, transaction_ids: Sequence[str]) -> list[ChallengerScore]:
        ids = list(dict.fromkeys(transaction_ids))
        found: list[ChallengerScore] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join([self.mark] * len(chunk))
            rows = self._fetchall(
                f"SELECT {_C_COLUMNS}, d.record FROM challenger_scores AS c"
                " LEFT JOIN decisions AS d"
                " ON d.transaction_id = c.transaction_id AND d.event_time_ms = c.event_time_ms"
                f" WHERE c.transaction_id IN ({marks})",
                tuple(chunk),
            )
            found += (self._score_of(row[:-1], row[-1]) for row in rows)
        found.sort(key=lambda s: (s.event_time_ms, s.transaction_id, s.model_version))
        return found

    def challenger_pairs(
        self, start: datetime, end: datetime, version: str | None = None
    ) -> Iterator[ChallengerPair]:
        m = self.mark
        decision_columns = ", ".join(f"d.{c.strip()}" for c in RECORD_COLUMNS.split(","))
        # The decision's event time is in both rows: joining on it too lets PostgreSQL
        # look in one partition of decisions.
        sql = (
            f"SELECT {_C_COLUMNS}, {decision_columns} FROM challenger_scores AS c"
            " JOIN decisions AS d"
            " ON d.transaction_id = c.transaction_id AND d.event_time_ms = c.event_time_ms"
            f" WHERE c.event_time_ms >= {m} AND c.event_time_ms < {m}"
            + ("" if version is None else f" AND c.model_version = {m}")
            + " ORDER BY c.event_time_ms, c.transaction_id, c.model_version"
        )
        params: list[Any] = [datetime_to_epoch_ms(start), datetime_to_epoch_ms(end)]
        if version is not None:
            params.append(version)
        width = len(COLUMNS.split(","))
        chunk: list[Any] = []
        for row in self._stream(sql, params):
            chunk.append(row)
            if len(chunk) == _CHUNK:
                yield from self._pairs(chunk, width)
                chunk = []
        if chunk:
            yield from self._pairs(chunk, width)

    def _pairs(self, rows: list[Any], width: int) -> Iterator[ChallengerPair]:
        labels = self.latest_labels_of([row[0] for row in rows])
        record_at = width + RECORD_COLUMNS.split(", ").index("record")
        for row in rows:
            score = self._score_of(row[:width], row[record_at])
            yield ChallengerPair(
                self._decision(row[width:]), score, labels.get(score.transaction_id)
            )

    def shadowed(self, start: datetime, end: datetime, version: str) -> Iterator[list[Shadowed]]:
        m = self.mark
        select = (
            "SELECT c.transaction_id, c.event_time_ms, c.score, c.action,"
            " d.score, d.action, d.model_version, d.record_json, d.record"
            " FROM challenger_scores AS c JOIN decisions AS d"
            " ON d.transaction_id = c.transaction_id AND d.event_time_ms = c.event_time_ms"
            f" WHERE c.model_version = {m} AND "
        )
        # Pages by event time alone, in the order of the (event_time_ms, model_version)
        # index, so each page stops after its rows (ordering by the id too would sort the
        # rest of the period for every page); the page's last millisecond is then read
        # whole, so ties never straddle two pages. One query each: a month's report holds
        # no read snapshot for its whole run (on SQLite that would keep the WAL from being
        # checkpointed).
        page_sql = (
            select + f"c.event_time_ms > {m} AND c.event_time_ms < {m}"
            f" ORDER BY c.event_time_ms LIMIT {_CHUNK}"
        )
        tie_sql = select + f"c.event_time_ms = {m}"
        end_ms = datetime_to_epoch_ms(end)
        after = datetime_to_epoch_ms(start) - 1  # integers: "> start - 1" is ">= start"
        while True:
            rows = self._fetchall(page_sql, (version, after, end_ms))
            if not rows:
                return
            full = len(rows) == _CHUNK
            if full:
                after = int(rows[-1][1])
                rows = [r for r in rows if int(r[1]) != after]
                rows += self._fetchall(tie_sql, (version, after))
            rows.sort(key=lambda r: (int(r[1]), str(r[0])))
            labels = self.latest_labels_of([row[0] for row in rows])
            yield [_shadowed(row, labels.get(row[0])) for row in rows]
            if not full:
                return

    def shadow_counts(self, start: datetime, end: datetime) -> ShadowCounts:
        m = self.mark
        # One statement: the total and the versions' counts come from the same snapshot.
        rows = self._fetchall(
            "WITH v AS (SELECT model_version, count(*) AS n, min(event_time_ms) AS first,"
            " max(event_time_ms) AS last FROM challenger_scores"
            f" WHERE event_time_ms >= {m} AND event_time_ms < {m} GROUP BY model_version)"
            " SELECT v.model_version, v.n, (SELECT count(*) FROM decisions AS d"
            "  WHERE d.event_time_ms >= v.first AND d.event_time_ms <= v.last) FROM v"
            " UNION ALL SELECT NULL, count(*), NULL FROM decisions"
            f" WHERE event_time_ms >= {m} AND event_time_ms < {m}",
            (datetime_to_epoch_ms(start), datetime_to_epoch_ms(end)) * 2,
        )
        versions = [row for row in rows if row[0] is not None]
        return ShadowCounts(
            decisions=sum(int(row[1]) for row in rows if row[0] is None),
            scored={str(row[0]): int(row[1]) for row in versions},
            in_span={str(row[0]): int(row[2]) for row in versions},
        )

    def challenger_versions(self, start: datetime, end: datetime) -> list[str]:
        rows = self._fetchall(
            "SELECT DISTINCT model_version FROM challenger_scores"
            f" WHERE event_time_ms >= {self.mark} AND event_time_ms < {self.mark}",
            (datetime_to_epoch_ms(start), datetime_to_epoch_ms(end)),
        )
        return sorted(str(row[0]) for row in rows)


def _champion_thresholds(record_json: str, record: bytes | None) -> tuple[float, float]:
    """The review and decline thresholds a stored decision was made with."""
    try:
        if record_json:
            stored = json.loads(record_json)["thresholds"]
            return float(stored["review"]), float(stored["decline"])
        assert record is not None  # the schema's CHECK: one form or the other
        decoded = compact.decode(bytes(record))
        return decoded.review, decoded.decline
    except (ValueError, KeyError) as exc:
        raise AuditStoreError(f"stored decision does not parse: {exc}") from exc


def _shadowed(row: Sequence[Any], label: bool | None) -> Shadowed:
    tid, event_ms, score, action, ours, our_action, our_version, record_json, record = row
    review, decline = _champion_thresholds(record_json, record)
    return Shadowed(
        transaction_id=str(tid),
        event_time_ms=int(event_ms),
        champion_version=str(our_version),
        champion_score=float(ours),
        champion_action=our_action,
        champion_model_action=action_between(float(ours), review, decline),
        challenger_score=float(score),
        challenger_action=action,
        label=label,
    )
