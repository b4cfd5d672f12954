"""Period reports of the SQLite store in SQL: GROUP BYs over the report columns of schema
version 4 (``sqlite_schema.py``) instead of a million records decoded in Python, and the
compact records' columns read straight from their MessagePack for what must be computed
per decision (importance, drift)."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from explain.audit import compact, filters
from explain.audit.columns import (
    HOUR_MS,
    LATENCY_BINS,
    LATENCY_BINS_PER_DECADE,
    UNLABELLED,
    DecisionColumns,
    PeriodAggregates,
    columns_of,
)
from explain.audit.sql_reads import SqlReads
from explain.audit.store import AuditStoreError, DecisionQuery
from explain.records import DecisionRecord

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


class SQLitePeriodReports(SqlReads):
    """The report queries of :class:`~explain.audit.store.ReportQueries` that SQLite answers
    in SQL (a mixin of the SQLite store)."""

    @abstractmethod
    def _fetchall_apart(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of a query, on a connection opened for it and closed after (for
        queries run side by side in threads that end)."""

    def _where(
        self,
        query: DecisionQuery,
        clauses: list[str] | None = None,
        params: list[Any] | None = None,
    ) -> tuple[str, list[Any]]:
        return filters.where(query, clauses, params, mark=self.mark, fallback=self.fallback)

    def period_aggregates(self, query: DecisionQuery, score_bins: int) -> PeriodAggregates | None:
        """GROUP BYs over the report columns of schema version 4; None when the period
        holds a row written before them (then the report reads records)."""
        where, params = self._where(query, ["latency_us IS NULL"])
        if self._fetchall(f"SELECT 1 FROM decisions {where} LIMIT 1", tuple(params)):
            return None
        where, params = self._where(query)
        p = tuple(params)
        hour = f"event_time_ms / {HOUR_MS:d}"
        # Microseconds / 10 is hundredths of a millisecond: the bins' lowest edge is 1.
        latency_bin = (
            f"min(max(CAST(floor(log10(max(latency_us / 10.0, 1.0)) * {LATENCY_BINS_PER_DECADE:d})"
            f" AS INTEGER), 0), {LATENCY_BINS - 1:d})"
        )
        # Two scans of the covering index (everything but the reasons; then the reasons,
        # whose combinations are few, so they are grouped whole and split here), and the
        # labelled decisions. Side by side, each on a connection of its own (SQLite works
        # without the GIL): on an idle 2-core machine the three took 4.8 + 2.7 + 1.0 s one
        # after the other over 1,000,000 decisions.
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
        with ThreadPoolExecutor(len(counted), thread_name_prefix="riskscore-report") as pool:
            rows, combinations, labels = pool.map(lambda q: self._fetchall_apart(*q), counted)
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
            where, params = self._where(query, extra, extra_params)
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
