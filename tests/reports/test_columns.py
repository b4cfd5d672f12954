"""The SQLite store's fast columns equal what the contract's default builds from full
records: a backend that keeps the default (PostgreSQL until it reads its own columns)
gives period reports the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explain.audit.columns import DecisionColumns
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStoreError, DecisionQuery, ReportQueries
from explain.reports.query import DecisionFilter
from explain.reports.summary import SCORE_BINS, summarize
from models.artifact_paths import default_artifact_dir
from models.artifacts import load_manifest
from service.settings import AUDIT_FILE


def _by_time(chunks: list[DecisionColumns]) -> dict[str, np.ndarray]:
    order = np.argsort(np.concatenate([c.event_time_ms for c in chunks]), kind="stable")
    joined = {
        "time": np.concatenate([c.event_time_ms for c in chunks]),
        "score": np.concatenate([c.score for c in chunks]),
        "latency": np.concatenate([c.latency_ms for c in chunks]),
        "fallback": np.concatenate([c.fallback for c in chunks]),
        "fraud": np.concatenate([c.is_fraud for c in chunks]),
        "values": np.concatenate([c.values for c in chunks]),
        "contributions": np.concatenate([c.contributions for c in chunks]),
        "action": np.concatenate([np.asarray(c.action) for c in chunks]),
        "reasons": np.array([r for c in chunks for r in c.reasons]),
    }
    return {name: column[order] for name, column in joined.items()}


def test_fast_columns_equal_the_default(data_dir: Path) -> None:
    with SQLiteAuditStore(data_dir / AUDIT_FILE) as store:
        query = DecisionQuery(limit=0)
        fast = list(store.decision_columns(query, chunk_size=97))
        default = list(ReportQueries.decision_columns(store, query, chunk_size=97))

    assert {c.feature_names for c in fast} == {c.feature_names for c in default}
    a, b = _by_time(fast), _by_time(default)
    assert len(a["time"]) == sum(len(c) for c in default) > 500
    assert (a["fraud"] >= 0).any() and (a["action"] == "decline").any()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class _RecordByRecord(SQLiteAuditStore):
    """The store without bulk counts: reports read every decision, as for rows written
    before the report columns (or a backend that does not count in bulk)."""

    def period_aggregates(self, query: DecisionQuery, score_bins: int) -> None:
        return None


@pytest.mark.parametrize("period", [{}, {"from": "2024-01-02", "to": "2024-01-02"}])
def test_bulk_counts_equal_counting_record_by_record(
    data_dir: Path, period: dict[str, str]
) -> None:
    selection = DecisionFilter.model_validate(period)
    reference = load_manifest(default_artifact_dir()).feature_distributions
    with SQLiteAuditStore(data_dir / AUDIT_FILE) as store:
        assert store.period_aggregates(selection.query(1), SCORE_BINS) is not None
        bulk = summarize(store, selection, reference)
    with _RecordByRecord(data_dir / AUDIT_FILE) as store:
        slow = summarize(store, selection, reference)

    assert bulk.total == slow.total > 0
    for name in (
        "by_action",
        "by_stage",
        "by_fallback_reason",
        "fallbacks",
        "reasons",
        "decline_reasons",
        "model_versions",
        "first_ms",
        "last_ms",
        "labelled",
        "labelled_fraud",
        "true_declines",
        "labelled_declines",
    ):
        assert getattr(bulk, name) == getattr(slow, name), name
    assert bulk.score_counts.tolist() == slow.score_counts.tolist()
    assert bulk.trends.points() == slow.trends.points()
    assert bulk.labelled > 0 and len(bulk.trends.points()) > 1
    # Under the sample size every decision is read for importance and drift.
    assert dict(bulk.mean_abs_shap()) == pytest.approx(dict(slow.mean_abs_shap()))
    assert bulk.drift() == slow.drift()


def test_bulk_counts_leave_no_connection_behind(data_dir: Path) -> None:
    # Its queries run side by side in threads that end: each on a connection of its own,
    # closed after, not a per-thread reader the store would keep until it closes.
    with SQLiteAuditStore(data_dir / AUDIT_FILE) as store:
        query = DecisionQuery(limit=0)
        store.period_aggregates(query, SCORE_BINS)
        kept = len(store._readers)
        for _ in range(3):
            store.period_aggregates(query, SCORE_BINS)
        assert len(store._readers) == kept
    with pytest.raises(AuditStoreError, match="closed"):
        store.period_aggregates(query, SCORE_BINS)
