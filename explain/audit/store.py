"""The audit store contract, in parts by job — the decision log (write, read by id),
the rebuild source (warm start), the training source (retraining), report queries, the
lists' history (``list_log.py``) and the shadow challenger's verdicts (``challenger_log.py``) —
so SQLite (one machine) and PostgreSQL (at scale) sit behind the same scorer, and each
part can be written and tested against its own small contract.

Writes are asynchronous and grouped: :meth:`DecisionLog.submit` queues a record and returns a
future that completes once the record is durable (committed and synced), so many requests
share one commit. Nothing is ever updated or deleted through this interface.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from explain.audit.challenger_log import ChallengerLog
from explain.audit.columns import DecisionColumns, PeriodAggregates, columns_of
from explain.audit.list_log import ListLog
from explain.decision import Decision
from explain.records import Action, DecisionRecord, LabelRecord, Stage
from features.schema import datetime_to_epoch_ms


class AuditStoreError(RuntimeError):
    """The store cannot accept or return records (disk full, closed, corrupt)."""


# What a submitted decision comes to: True (stored now), False (an earlier record with its
# id stands), or the error that kept it from being stored.
Outcome = bool | AuditStoreError


@dataclass(frozen=True)
class DecisionQuery:
    """Filters for reading decisions back; every filter is optional. Times are event times."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    action: Action | None = None
    customer_id: str | None = None
    limit: int = 1000
    stage: Stage | None = None
    fallback: bool | None = None
    min_score: float | None = None  # inclusive


@dataclass(frozen=True)
class PageKey:
    """A position in newest-first order: the last decision of the page before.

    Event time, then transaction id (unique): a total order that later inserts cannot
    reshuffle, so paging from a key never repeats or skips a decision already stored.
    """

    event_time_ms: int
    transaction_id: str


@dataclass(frozen=True)
class RebuildEvent:
    """What warming the online feature state needs from one stored decision."""

    transaction_id: str
    customer_id: str
    terminal_id: str
    epoch_ms: int
    local_epoch_ms: int
    amount: float


@dataclass(frozen=True)
class StoredVector:
    """A stored decision's payment and the feature values the fast path computed for it."""

    transaction_id: str
    customer_id: str
    epoch_ms: int
    amount: float
    features: dict[str, float]


@dataclass(frozen=True)
class TrainingRow:
    """A stored decision as retraining reads it: the feature values exactly as decided
    (in the order of ``feature_names``, the explanation schema the record was stored with),
    what the serving model answered, and the latest label known by the cut-off (None
    without one)."""

    transaction_id: str
    customer_id: str
    epoch_ms: int
    action: Action
    score: float
    model_version: str
    feature_names: tuple[str, ...]
    values: np.ndarray
    is_fraud: bool | None


class DecisionLog(ABC):
    """Decisions and labels written durably, and read back by transaction id: what the
    scorer needs on its request path."""

    @abstractmethod
    def submit(self, decision: Decision) -> Future[bool]:
        """Queue a decision; the future gives True once it is durable, False if a record
        with its transaction id was already stored (the stored one stands), or raises
        :class:`AuditStoreError`."""

    @abstractmethod
    def submit_many(self, decisions: Sequence[Decision]) -> Future[list[Outcome]]:
        """Queue decisions as one group with one future: per decision, in order, what
        :meth:`submit` would give (True, False, or the error instead of raising it)."""

    @abstractmethod
    def submit_label(self, label: LabelRecord) -> Future[None]:
        """Queue a label (appended, never replacing an earlier one); durable when done."""

    async def append(self, decision: Decision) -> bool:
        return await asyncio.wrap_future(self.submit(decision))

    async def append_label(self, label: LabelRecord) -> None:
        await asyncio.wrap_future(self.submit_label(label))

    @abstractmethod
    def get(self, transaction_id: str) -> DecisionRecord | None:
        """The durable decision for a transaction id, or None."""

    @abstractmethod
    def get_many(self, transaction_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The durable decisions among these ids, by id (absent ids are left out)."""

    @abstractmethod
    def labels(self, transaction_id: str) -> list[LabelRecord]:
        """Every label recorded for a transaction, in the order received."""

    @abstractmethod
    def labels_by_transaction(self, transaction_ids: Sequence[str]) -> dict[str, list[LabelRecord]]:
        """Every label of each of these transactions (an empty list for one without)."""

    @abstractmethod
    def vectors_of(self, transaction_ids: Sequence[str]) -> dict[str, StoredVector]:
        """The stored payments among these ids, with their feature values as decided."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise :class:`AuditStoreError` unless a write would succeed now (readiness)."""

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is durable."""

    @abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Flush, stop accepting records and release the database; idempotent."""


class RebuildSource(ABC):
    """What rebuilding the online state after a restart reads (the warm start)."""

    @abstractmethod
    def rebuild_events(
        self, since_epoch_ms: int, written_after: int | None = None
    ) -> Iterator[RebuildEvent]:
        """Stored transactions with event time >= ``since_epoch_ms``, in event-time order
        (ties in decision order): for rebuilding the online feature state after a restart.
        With ``written_after`` (a :meth:`written_mark`), only those written after it."""

    @abstractmethod
    def written_mark(self) -> int | None:
        """Where the order of writing stands (the latest committed decision's place in it),
        or None for an empty store: what a checkpoint of the state says it holds. Exact
        for one writer (this process), whose decisions commit in the order they are
        written."""

    @abstractmethod
    def recent_feature_vectors(
        self, since_epoch_ms: int, per_customer: int
    ) -> Iterator[StoredVector]:
        """Each customer's latest ``per_customer`` decisions with event time >=
        ``since_epoch_ms``, all in event-time order (ties in decision order), with the
        feature values as decided: for rebuilding the customers' sequences after a restart
        exactly as they were (values that depended on labels known at the time included)."""

    @abstractmethod
    def latest_event_ms(self) -> int | None:
        """The latest stored event time, or None for an empty store (where a replay starts)."""

    @abstractmethod
    def latest_labels(self, since_epoch_ms: int) -> Iterator[tuple[str, bool]]:
        """(transaction id, latest is_fraud) for labelled transactions with event time >=
        ``since_epoch_ms``."""


class TrainingSource(ABC):
    """What retraining from the audit store reads (``riskscore train --from-store``)."""

    @abstractmethod
    def training_rows(
        self, start_ms: int, end_ms: int, labels_known_by_ms: int
    ) -> Iterator[TrainingRow]:
        """Stored decisions with ``start_ms`` <= event time < ``end_ms``, in event-time
        order (ties in decision order), each with its latest label (by receipt) among
        those whose labelled-at time is at or before ``labels_known_by_ms``."""


class ReportQueries(ABC):
    """Searches over stored decisions for compliance reports."""

    @abstractmethod
    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        """Decisions matching the filters, oldest event time first."""

    @abstractmethod
    def page(self, query: DecisionQuery, after: PageKey | None = None) -> list[DecisionRecord]:
        """Up to ``query.limit`` decisions matching the filters, newest event time first
        (ties by transaction id, descending), strictly after ``after`` in that order."""

    @abstractmethod
    def latest_labels_of(self, transaction_ids: Sequence[str]) -> dict[str, bool]:
        """The latest is_fraud of each of these transactions that has a label."""

    def period_aggregates(self, query: DecisionQuery, score_bins: int) -> PeriodAggregates | None:
        """The decisions matching the filters counted in bulk, or None when this store
        cannot (then reports aggregate :meth:`decision_columns`, which is always right).
        The default is None; SQLite counts with GROUP BYs."""
        return None

    def decision_columns(
        self, query: DecisionQuery, chunk_size: int = 10_000, every: int = 1
    ) -> Iterator[DecisionColumns]:
        """Every decision matching the filters (``query.limit`` is ignored), with its latest
        label, as chunks of columns in no promised order: what period reports aggregate.
        ``every`` > 1 asks for a systematic sample of about one decision in ``every``.

        This default builds full records page by page and is correct for any backend; a
        backend overrides it to read its columns without building records (SQLite does:
        a million decisions in seconds rather than a minute).
        """
        paged = DecisionQuery(**{**vars(query), "limit": chunk_size})
        after: PageKey | None = None
        while True:
            records = self.page(paged, after)
            sample = records[::every]
            labels = self.latest_labels_of([r.transaction_id for r in sample])
            yield from columns_of(sample, labels)
            if len(records) < chunk_size:
                return
            last = records[-1]
            after = PageKey(last.transaction.epoch_ms, last.transaction_id)


@dataclass(frozen=True)
class Pruned:
    """What one retention run removed (PostgreSQL: the partitions dropped, too)."""

    cutoff_ms: int
    decisions: int
    labels: int
    partitions: tuple[str, ...] = ()


class Retention(ABC):
    """The one way records leave a store."""

    @abstractmethod
    def prune(self, older_than_days: int, *, now: datetime | None = None) -> Pruned:
        """Remove decisions (with their labels and challenger rows) whose event time is more than
        ``older_than_days`` before ``now``, as the backend can (whole months on
        PostgreSQL), recording the removal in the store itself."""


def retention_cutoff_ms(older_than_days: int, now: datetime | None = None) -> int:
    """The event time (epoch ms) before which decisions are past a retention period.

    >>> from datetime import UTC
    >>> retention_cutoff_ms(1, datetime(2024, 3, 2, tzinfo=UTC))
    1709251200000
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be >= 1")
    moment = now or datetime.now(UTC)
    return datetime_to_epoch_ms(moment) - older_than_days * 86_400_000


class AuditStore(
    DecisionLog, RebuildSource, TrainingSource, ReportQueries, Retention, ListLog, ChallengerLog
):
    """The whole contract a backend provides (SQLite here; PostgreSQL at scale). Parts of
    the service take only the part they use."""
