"""Label feedback: recorded durably first, then fed into the feature state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from explain.audit.store import AuditStoreError, DecisionLog
from explain.records import LabelOutcomeName, LabelRecord
from features.state import FeatureState, FeatureStateUnavailable, LabelOutcome
from service.errors import AuditUnavailable, FeatureStateDown, NotFound
from service.in_flight import InFlight, as_replay
from service.prometheus_metrics import ScoringMetrics

log = logging.getLogger(__name__)

LabelKey = tuple[str, bool, datetime | None]
T = TypeVar("T")


class LabelIntake:
    """Takes labels for decided transactions (see :meth:`record`)."""

    def __init__(
        self,
        store: DecisionLog,
        engine: FeatureState,
        in_flight: InFlight,
        metrics: ScoringMetrics | None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._in_flight = in_flight
        self._metrics = metrics
        self._writing: dict[LabelKey, asyncio.Future[None]] = {}

    async def record(
        self, transaction_id: str, is_fraud: bool, labelled_at: datetime | None = None
    ) -> LabelOutcomeName:
        """Record a label durably, then feed it into the feature state.

        Returns ``applied`` (the state changed), ``unchanged`` (the same label was known)
        or ``recorded`` (stored for reports; too old for any feature window). Raises
        :class:`NotFound` unless the transaction has a recorded decision (waiting for one
        still being written), :class:`AuditUnavailable` if the label cannot be stored.
        """
        pending = self._in_flight.get(transaction_id)
        if pending is not None:
            try:
                await asyncio.shield(as_replay(pending.future))
            except AuditUnavailable:
                raise NotFound(
                    f"the decision for transaction {transaction_id!r} was not recorded"
                ) from None
        elif not await self._read(lambda: self._store.get(transaction_id) is not None):
            raise NotFound(f"no decision recorded for transaction {transaction_id!r}")
        # Labels are idempotent by content: a re-delivered or repeated label (same verdict,
        # same time) is not stored again, whether it is still being written or already is.
        key = (transaction_id, is_fraud, labelled_at)
        writing = self._writing.get(key)
        if writing is not None:
            await asyncio.shield(writing)
            return "unchanged"
        known = await self._read(lambda: self._store.labels(transaction_id))
        if known and (known[-1].is_fraud, known[-1].labelled_at) == (is_fraud, labelled_at):
            return "unchanged"
        writing = self._writing.get(key)  # another copy may have started while we read
        if writing is not None:
            await asyncio.shield(writing)
            return "unchanged"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing[key] = done
        try:
            return await self._store_label(transaction_id, is_fraud, labelled_at)
        finally:
            del self._writing[key]
            done.set_result(None)

    async def record_many(
        self, labels: list[LabelKey]
    ) -> list[LabelOutcomeName | NotFound | AuditUnavailable]:
        """Many labels at once, sharing group commits; each gets its outcome or error."""
        settled = await asyncio.gather(
            *(self.record(*label) for label in labels), return_exceptions=True
        )
        out: list[LabelOutcomeName | NotFound | AuditUnavailable] = []
        for outcome in settled:
            if isinstance(outcome, NotFound | AuditUnavailable):
                out.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                out.append(outcome)
        return out

    async def _read(self, read: Callable[[], T]) -> T:
        """A read of the audit store, off the event loop (it may wait on the disk)."""
        try:
            return await asyncio.to_thread(read)
        except AuditStoreError as exc:
            log.error("the audit store could not be read: %s", exc)
            raise AuditUnavailable("the audit store could not be read; retry") from None

    async def _store_label(
        self, transaction_id: str, is_fraud: bool, labelled_at: datetime | None
    ) -> LabelOutcomeName:
        label = LabelRecord(
            transaction_id=transaction_id,
            is_fraud=is_fraud,
            labelled_at=labelled_at,
            received_at=datetime.now(UTC),
        )
        try:
            await self._store.append_label(label)
        except AuditStoreError as exc:
            log.error(
                "a label could not be recorded: %s", exc, extra={"transaction_id": transaction_id}
            )
            raise AuditUnavailable("the label could not be recorded; retry") from None
        # Only a durable label changes the state: a failed one is retried, not half-applied.
        try:
            outcome = self._engine.record_label(transaction_id, is_fraud)
        except FeatureStateUnavailable as exc:
            raise FeatureStateDown(
                f"{exc}; the label is recorded but has not reached the feature state"
            ) from None
        reported: LabelOutcomeName = (
            "recorded" if outcome is LabelOutcome.UNKNOWN else outcome.value  # type: ignore[assignment]
        )
        if self._metrics is not None:
            self._metrics.observe_label(reported)
        return reported
