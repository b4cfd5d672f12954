"""The challenger report's reading: the period's decisions with their challenger rows and
labels, from the audit store, into one :class:`Comparer` per challenger version.

Every version with rows in the period is read in one pass (a challenger is usually one
version at a time; after a change of challenger there are two), so the page can name the
others and link to them. Without ``version`` the report shows the one that scored the most
decisions (ties: the later name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from explain.audit.challenger_log import ChallengerScore as StoredScore
from explain.audit.store import AuditStore
from explain.records import Explanation
from explain.reports.challenger_compare import DEFAULT_DISAGREEMENTS, Comparer, Comparison
from explain.reports.query import STREAM_PAGE, ChallengerPeriod, DecisionFilter

# An open period: from the first decision ever stored, to any decision still to come.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class _Verdict:
    """A stored challenger row as the comparison reads it; its explanation (every feature's
    SHAP value, the bulk of the row) is parsed only for the disagreements shown."""

    def __init__(self, stored: StoredScore) -> None:
        self._stored = stored
        self.model_version = stored.model_version
        self.score = stored.score
        self.action: str = stored.action

    @cached_property
    def explanation(self) -> Explanation:
        return self._stored.explanation()


@dataclass(frozen=True)
class ChallengerReading:
    """The comparison of the version shown, and how many decisions each version scored."""

    comparison: Comparison
    versions: dict[str, int]


def decision_count(store: AuditStore, period: ChallengerPeriod) -> int:
    """Every decision of the period, shadowed or not (counted in bulk where the store can)."""
    query = DecisionFilter.model_validate({"start": period.start, "end": period.end}).query(
        STREAM_PAGE
    )
    aggregates = store.period_aggregates(query, 1)
    if aggregates is not None:
        return sum(group[-1] for group in aggregates.groups)
    return sum(len(chunk) for chunk in store.decision_columns(query))


def read_comparison(
    store: AuditStore,
    period: ChallengerPeriod,
    top: int = DEFAULT_DISAGREEMENTS,
    on_pair: Callable[[], object] | None = None,
) -> ChallengerReading:
    """Compare the champion with the challenger (``period.version``, or the busiest) over
    the period; ``on_pair`` hears of each row read (progress)."""
    comparers: dict[str, Comparer] = {}
    start, end = period.start or _BEGINNING, period.end or _END_OF_TIME
    for pair in store.challenger_pairs(start, end):
        version = pair.challenger.model_version
        comparer = comparers.get(version)
        if comparer is None:
            comparer = comparers[version] = Comparer(version, top)
        comparer.add(pair.decision, _Verdict(pair.challenger), pair.label)
        if on_pair is not None:
            on_pair()
    versions = {version: comparer.shadowed for version, comparer in comparers.items()}
    chosen = period.version
    if chosen is None and versions:
        chosen = max(versions, key=lambda v: (versions[v], v))
    shown = comparers.get(chosen or "") or Comparer(chosen, top)
    total = decision_count(store, period)
    shown.add_unshadowed(total - versions.get(chosen or "", 0))
    return ChallengerReading(shown.result(), versions)
