"""The durable record before the answer: decisions go to the audit store in groups, and
each request's future settles only once its decision's record is on disk."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any

from explain.audit.store import AuditStoreError, DecisionLog, Outcome
from explain.decision import Decision, from_record
from explain.records import DecisionRecord
from service.errors import AuditUnavailable, IdempotencyConflict
from service.in_flight import InFlight, Scored, check_same
from service.prometheus_metrics import ScoringMetrics

log = logging.getLogger(__name__)


class Recorder:
    """Writes decisions and settles their futures (on the event loop)."""

    def __init__(
        self, store: DecisionLog, in_flight: InFlight, metrics: ScoringMetrics | None
    ) -> None:
        self._store = store
        self._in_flight = in_flight
        self._metrics = metrics
        self._tasks: set[asyncio.Future[None]] = set()
        # Told of the decisions just made durable, as their answers are settled (the
        # shadow challenger's queue, service/shadow.py); must not block.
        self.after_durable: Callable[[Sequence[Decision]], None] | None = None

    def record(
        self,
        decisions: list[Decision],
        futures: list[asyncio.Future[Scored]],
        retry: bool = False,
    ) -> None:
        """Write the decisions as one group; each future settles once its record is durable.

        ``retry``: the decisions were made earlier (their first write failed), so their
        answers are replays.
        """
        if not decisions:
            return
        for decision, future in zip(decisions, futures, strict=True):
            self._in_flight.attach(decision, future)
        submitted = time.perf_counter()
        try:
            group = self._store.submit_many(decisions)
        except AuditStoreError as exc:
            for future in futures:
                fail(future, exc)
            return
        loop = asyncio.get_running_loop()

        def on_written(done: Future[list[Outcome]]) -> None:
            loop.call_soon_threadsafe(self._settle, decisions, futures, done, submitted, retry)

        group.add_done_callback(on_written)

    def _settle(
        self,
        decisions: list[Decision],
        futures: list[asyncio.Future[Scored]],
        written: Future[list[Outcome]],
        submitted: float,
        retry: bool,
    ) -> None:
        try:
            outcomes = written.result()
        except BaseException as exc:  # the group future itself failed: nobody may wait on
            outcomes = [AuditStoreError(str(exc))] * len(decisions)
        store_seconds = time.perf_counter() - submitted
        raced: list[tuple[Decision, asyncio.Future[Scored]]] = []
        durable: list[Decision] = []
        for decision, future, outcome in zip(decisions, futures, outcomes, strict=True):
            try:
                if isinstance(outcome, BaseException):
                    fail(future, outcome)  # kept in flight: a retry writes it again
                    continue
                self._in_flight.done(decision.transaction_id, future)
                if outcome:
                    if not future.done():
                        future.set_result(Scored(decision, replayed=retry))
                    if self._metrics is not None:
                        self._metrics.observe_decision(decision, store_seconds)
                    durable.append(decision)
                else:
                    raced.append((decision, future))
            except Exception as exc:  # whatever happens here, nobody may be left waiting
                fail(future, exc)
        if durable and self.after_durable is not None:
            try:
                self.after_durable(durable)
            except Exception:  # the shadow must never cost a decision its answer
                log.exception("the shadow challenger could not take decisions")
        if raced:
            # Another writer stored these ids first; their records are the decisions.
            self.spawn(self._answer_from_store(raced))

    async def _answer_from_store(
        self, raced: list[tuple[Decision, asyncio.Future[Scored]]]
    ) -> None:
        try:
            stored = await asyncio.to_thread(
                self._store.get_many, [d.transaction_id for d, _ in raced]
            )
        except Exception as exc:
            for _, future in raced:
                fail(future, exc)
            return
        for decision, future in raced:
            record = stored.get(decision.transaction_id)
            if record is None:
                fail(future, AuditStoreError("a stored decision could not be read back"))
            else:
                settle_replay(future, record, decision.request_sha256)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task kept referenced until done (the loop holds tasks weakly)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def fail(future: asyncio.Future[Scored], error: BaseException) -> None:
    """The decision could not be recorded: it is not given (503), a retry writes it."""
    # The cause (file paths, SQL) goes to the log, not to the client.
    log.error("a decision could not be recorded: %s", error)
    set_error(
        future,
        AuditUnavailable("the decision could not be recorded; retry with the same transaction_id"),
    )


def set_error(future: asyncio.Future[Scored], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: waiters re-raise it, and nobody waiting is no error


def settle_replay(future: asyncio.Future[Scored], record: DecisionRecord, digest: str) -> None:
    """Answer with a stored decision (a replay), or refuse a different body."""
    try:
        check_same(record.transaction_id, record.request_sha256, digest)
    except IdempotencyConflict as exc:
        set_error(future, exc)
        return
    if not future.done():
        future.set_result(Scored(from_record(record), replayed=True))
