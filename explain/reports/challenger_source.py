"""The challenger report's reading from the audit store: counts by SQL, the shown
version's light columns in keyset pages, full records only for the disagreements shown.

The store counts the period's decisions and every challenger version's rows in one
statement, so the page can name the other versions and link to them; only the version
shown is read row by row. Without ``version`` the report shows the one that scored the
most decisions (ties: the later name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from explain.audit.store import AuditStore
from explain.reports.challenger_compare import (
    DEFAULT_DISAGREEMENTS,
    Comparer,
    Comparison,
    Disagreement,
)
from explain.reports.query import ChallengerPeriod
from models.train.label_policy import LabelPolicy

# An open period: from the first decision ever stored, to any decision still to come.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ChallengerReading:
    """The comparison of the version shown, and how many decisions each version scored."""

    comparison: Comparison
    versions: dict[str, int]


def _completed(store: AuditStore, version: str, shown: list[Disagreement]) -> list[Disagreement]:
    """The disagreements shown with their full records and the challenger's explanations
    (read for these few only: decoding every record took most of a report's time)."""
    ids = [d.transaction_id for d in shown]
    records = store.get_many(ids)
    explanations = {
        score.transaction_id: score.explanation()
        for score in store.challenger_scores_of(ids)
        if score.model_version == version
    }
    return [
        replace(
            d,
            record=records.get(d.transaction_id),
            challenger_explanation=explanations.get(d.transaction_id),
        )
        for d in shown
    ]


def read_comparison(
    store: AuditStore,
    period: ChallengerPeriod,
    top: int = DEFAULT_DISAGREEMENTS,
    on_rows: Callable[[int], object] | None = None,
    as_of: datetime | None = None,
) -> ChallengerReading:
    """Compare the champion with the challenger (``period.version``, or the busiest) over
    the period, unlabelled payments judged by the label delay as of ``as_of`` (default
    now); ``on_rows`` hears how many rows each page held (progress)."""
    start, end = period.start or _BEGINNING, period.end or _END_OF_TIME
    counts = store.shadow_counts(start, end)
    versions = counts.scored
    chosen = period.version
    if chosen is None and versions:
        chosen = max(versions, key=lambda v: (versions[v], v))
    policy = LabelPolicy(
        as_of=as_of or datetime.now(UTC), delay=timedelta(days=period.label_delay_days)
    )
    comparer = Comparer(chosen, policy, top)
    if chosen in versions:
        assert chosen is not None
        for rows in store.shadowed(start, end, chosen):
            comparer.add(rows)
            if on_rows is not None:
                on_rows(len(rows))
    # Rows written after the counting statement could make the pages hold more.
    comparer.add_unshadowed(max(counts.decisions - comparer.shadowed, 0))
    result = comparer.result()
    if chosen is not None and result.disagreements:
        result = replace(result, disagreements=_completed(store, chosen, result.disagreements))
    return ChallengerReading(replace(result, in_span=counts.in_span.get(chosen or "")), versions)
