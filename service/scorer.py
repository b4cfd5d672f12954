"""The one scoring core behind every transport (HTTP and Kafka).

For each payment: idempotency (``in_flight.py``) → the fast path, batched (features, model,
exact SHAP, reasons: ``fast_path.py``) → the second stage for in-band payments within
their budget (``second_stage.py``) → the decision, built once (``decisions.py``) → its
durable audit record (``recording.py``) → the answer. It knows no HTTP or Kafka types:
transports decode into :class:`~features.schema.Transaction`, call :meth:`Scorer.submit`
(or :meth:`Scorer.score`, :meth:`Scorer.score_batch`) and encode the
:class:`~explain.decision.Decision` that comes back.

:meth:`Scorer.submit` runs synchronously on the event loop up to the second stage and the
audit write: doing it without an ``await`` is what keeps concurrent requests from
interleaving updates of the feature state or racing on the same transaction id. Every id
is registered as in flight before the first ``await``, so a retry of it waits for its
decision rather than scoring it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from explain.audit.store import AuditStore, AuditStoreError
from explain.decision import Decision
from explain.explainer import Explainer, make_explainer
from explain.reasons import DEFAULT_REASON_COUNT
from explain.records import DecisionRecord, LabelOutcomeName
from explain.sequence_attribution import complete_attributions
from features.currency import CurrencyRefused, Pricing
from features.online import OnlineFeatureEngine
from features.schema import Transaction
from features.sequence import OnlineSequences, SequenceSpec, SequenceStore, SequenceView
from features.state import FeatureState
from models.cascade import DEFAULT_BUDGET_MS, Cascade
from models.fast import FastModel, ModelSlot
from models.rules.policy import Policy
from service.decisions import build_decision
from service.errors import AuditUnavailable, IdempotencyConflict, NotFound, UnsupportedCurrency
from service.fast_path import Draft, FastPath, ModelBundle
from service.in_flight import InFlight, Scored, as_replay, check_same, settled
from service.label_intake import LabelIntake
from service.list_sync import ListSync
from service.prometheus_metrics import ScoringMetrics
from service.recording import Recorder, fail, set_error, settle_replay
from service.second_stage import SecondStage
from service.warm_start import compile_hot_path, rebuild

if TYPE_CHECKING:
    from service.model_promotion import ModelPromotion
    from service.shadow import Shadow

log = logging.getLogger(__name__)

__all__ = ["ScoreRequest", "Scored", "Scorer"]


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One payment to decide: when it arrived (``time.perf_counter()``) and its own latency
    budget in ms (None: the scorer's default)."""

    tx: Transaction
    received: float
    budget_ms: float | None = None


class Scorer:
    """Scores transactions, records every decision, and takes label feedback."""

    def __init__(
        self,
        models: ModelSlot,
        store: AuditStore,
        *,
        engine: FeatureState | None = None,
        reason_count: int = DEFAULT_REASON_COUNT,
        metrics: ScoringMetrics | None = None,
        explainer_factory: Callable[[FastModel], Explainer] | None = None,
        cascade: Cascade | None = None,
        budget_ms: float = DEFAULT_BUDGET_MS,
        sequences: SequenceStore | None = None,
        pricing: Pricing | None = None,
        sequence_spec: SequenceSpec | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._models = models
        # Lists and rules, after the model (block > allow > rules > model).
        self.policy = policy or Policy()
        self.lists = ListSync(store, self.policy)
        self._pricing = pricing or Pricing()
        self._store = store
        self._engine: FeatureState = engine or OnlineFeatureEngine()
        self._metrics = metrics
        self._cascade = cascade
        # The customers' sequences: given (beside an external feature state), else in here;
        # kept whenever a second stage may run (``sequence_spec``: the one a later model
        # version's stage will need, when the version served first has none).
        spec = cascade.model.spec if cascade is not None else sequence_spec
        if spec is None:
            self._sequences: SequenceStore | None = None
        else:
            self._sequences = sequences or OnlineSequences(spec)
        self._fast_path = FastPath(
            models,
            self._engine,
            explainer_factory or (lambda m: make_explainer("fast", m)),
            reason_count,
            cascade,
            self._sequences,
        )
        self._second = None if self._sequences is None else SecondStage(budget_ms, self.policy)
        self._in_flight = InFlight()
        self._recorder = Recorder(store, self._in_flight, metrics)
        # One thread, so lookups finish in the order they were asked: payments that wait
        # for one reach the feature state in their order of arrival among themselves.
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="riskscore-lookup")
        self._lookups_waiting = 0  # lookups not yet answered: new payments queue behind them
        self._labels = LabelIntake(store, self._engine, self._in_flight, metrics)
        # Whether the feature state holds every stored payment it could know of (it was
        # rebuilt from the store, or the store was empty): only then may its duplicate
        # check stand in for a store lookup.
        self._covers_store = False
        self.warmed = False
        self.warm_error: str | None = None
        # Model versions and their promotion (set by the composition root).
        self.promotion: ModelPromotion | None = None
        self.shadow: Shadow | None = None

    def set_shadow(self, shadow: Shadow) -> None:
        """Hand every decision made durable from now on to the shadow challenger's queue."""
        self.shadow = shadow
        self._recorder.after_durable = shadow.offer

    # ------------------------------------------------------------------ state

    @property
    def store(self) -> AuditStore:
        return self._store

    @property
    def model_version(self) -> str:
        return self._models.model.version

    @property
    def sequence_spec(self) -> SequenceSpec | None:
        """The shape of the customers' sequences kept: a second stage must match it."""
        return None if self._sequences is None else self._sequences.spec

    def prepare(self, model: FastModel, cascade: Cascade | None) -> ModelBundle:
        """A model bundle ready to serve (blocking: builds the explainer's tables)."""
        return self._fast_path.prepare(model, cascade)

    def install(self, bundle: ModelBundle) -> ModelBundle:
        """Serve ``bundle`` from the next payment on (one step on the event loop, so no
        payment sees half of it); returns the bundle it replaces. Payments already past
        the fast path finish with their own bundle."""
        old = self._fast_path.install(bundle)
        self._cascade = bundle.cascade
        return old

    @property
    def bundle(self) -> ModelBundle:
        return self._fast_path.bundle()

    @property
    def engine(self) -> FeatureState:
        return self._engine

    @property
    def in_flight(self) -> int:
        """Payments being decided or written right now (not those whose write failed and
        that wait for a retry: they would hold Kafka's backpressure gate shut forever)."""
        return self._in_flight.unsettled()

    def registered_decisions(self) -> list[asyncio.Future[Scored]]:
        """Futures of the payments being decided, written, or whose write failed (the
        feature state may hold them while the audit store does not, yet)."""
        return self._in_flight.futures()

    def sequence_view(self, customer_id: str, at_ms: int) -> SequenceView | None:
        """The customer's sequence as the second stage would see it at ``at_ms``."""
        return None if self._sequences is None else self._sequences.view(customer_id, at_ms)

    def check_ready(self) -> list[str]:
        """What keeps the scorer from serving, empty when ready (for /readyz).

        Blocking (it tries a write on the audit file): call it off the event loop.
        """
        problems = []
        if not self._models.ready:
            problems.append("no model is loaded")
        if self.warm_error is not None:
            problems.append(f"rebuilding the feature state failed: {self.warm_error}")
        elif not self.warmed:
            problems.append("the feature state is still being rebuilt")
        try:
            self._store.check_writable()
        except AuditStoreError as exc:
            problems.append(f"audit store is not writable: {exc}")
        state_problem = self._engine.problem()
        if state_problem is not None:
            problems.append(state_problem)
        return problems

    def warm_start(
        self,
        from_store: bool = True,
        progress: Callable[[int], object] | None = None,
        settle: Callable[[], object] | None = None,
        checkpoint: Path | None = None,
    ) -> int:
        """Get ready to score: rebuild the feature state, then run the hot path once.

        With ``from_store``, replays the stored transactions any window can still see, then
        their latest labels (``warm_start.rebuild``); with a ``checkpoint`` file of the
        in-process state, only what came after it. ``settle`` runs last, before the
        scorer says it is ready (the service settles its heap there: a full collection
        that would otherwise stall the first requests). Returns the transactions replayed.
        """
        self.lists.refresh()  # the lists as stored, before the first payment
        replayed = (
            rebuild(self._store, self._engine, self._sequences, progress, checkpoint)
            if from_store
            else 0
        )
        self._covers_store = from_store or self._store.latest_event_ms() is None
        compile_hot_path(self._engine, self._fast_path, self._cascade)
        if settle is not None:
            settle()
        self.warmed = True
        return replayed

    async def drain(self, timeout_s: float) -> None:
        """Wait for second-stage decisions still in flight, then stop the stage's thread."""
        if self._second is not None:
            await self._second.drain(timeout_s, self._cascade)
        elif self._cascade is not None:
            self._cascade.close()
        self._lookups.shutdown(wait=False)

    # ---------------------------------------------------------------- scoring

    async def score(
        self, tx: Transaction, received: float | None = None, budget_ms: float | None = None
    ) -> Scored:
        """Decide one transaction, or return the decision already made for its id.

        ``received`` is the ``time.perf_counter()`` instant the request arrived (default:
        now) and ``budget_ms`` its latency budget from then (default: the scorer's); the
        second stage never runs past it. Raises :class:`IdempotencyConflict` for a known
        id with a different body and :class:`AuditUnavailable` when the decision could
        not be made durable.
        """
        started = time.perf_counter() if received is None else received
        (future,) = self.submit([ScoreRequest(tx, started, budget_ms)])
        # Shielded: a cancelled request must not cancel the write retries wait on.
        return await asyncio.shield(future)

    async def score_batch(
        self,
        items: list[Transaction],
        received: float | None = None,
        budget_ms: float | None = None,
    ) -> list[Scored | IdempotencyConflict | UnsupportedCurrency]:
        """Decide many transactions together (one model call, one explainer call).

        Items are applied to the feature state in the order given. Each gets its own
        result: a decision, or the conflict (or currency) that refused it; the rest still
        score. Raises
        :class:`AuditUnavailable` if any decision could not be recorded: then nothing of
        the batch is answered (a retry of the batch gets the decisions made).
        """
        started = time.perf_counter() if received is None else received
        futures = self.submit([ScoreRequest(tx, started, budget_ms) for tx in items])
        outcomes = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        results: list[Scored | IdempotencyConflict | UnsupportedCurrency] = []
        for outcome in outcomes:
            if isinstance(outcome, IdempotencyConflict | UnsupportedCurrency | Scored):
                results.append(outcome)
            else:
                raise outcome
        return results

    def submit(self, requests: list[ScoreRequest]) -> list[asyncio.Future[Scored]]:
        """Decide what can be decided now; one future per request, in order.

        Synchronous: the fast path of every new payment runs now, as one batch in the
        order given; each future settles once its decision is durable (or with
        :class:`IdempotencyConflict` / :class:`AuditUnavailable`). A repeat of an id
        earlier in the same call shares its first copy's fate, as a replay.

        Payments reach the feature state in arrival order. One whose id the state cannot
        vouch for waits for a store lookup (off the event loop); it and every payment
        after it — in this call and in later ones — then wait behind that lookup, in
        order, rather than overtake it.
        """
        requests = list(requests)  # converted payments replace their request below
        n = len(requests)
        futures: list[asyncio.Future[Scored] | None] = [None] * n
        new: list[int] = []
        needs_lookup: list[bool] = []
        first: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []
        for i, request in enumerate(requests):
            try:
                # Amounts in the reference currency from here on: features add them up.
                tx = self._pricing.price(request.tx)
            except CurrencyRefused as exc:
                futures[i] = settled(UnsupportedCurrency(str(exc)))
                continue
            if tx is not request.tx:
                request = requests[i] = replace(request, tx=tx)
            tid = tx.transaction_id
            try:
                j = first.get(tid)
                if j is not None:
                    check_same(tid, requests[j].tx.digest, tx.digest)
                    repeats.append((i, j))
                    continue
                earlier = self._earlier(tid, tx.digest)
            except IdempotencyConflict as exc:
                futures[i] = settled(exc)
                continue
            if earlier is not None:
                futures[i] = earlier
                continue
            first[tid] = i
            new.append(i)
            needs_lookup.append(self._needs_lookup(tx))
        # Decided now: the payments before the first that must wait for a lookup (none while
        # an earlier lookup is still out).
        first_wait = next((k for k, wait in enumerate(needs_lookup) if wait), len(new))
        cut = 0 if self._lookups_waiting else first_wait
        if cut:
            decided = self._decide([requests[i] for i in new[:cut]], [None] * cut)
            for i, future in zip(new[:cut], decided, strict=True):
                futures[i] = future
        if cut < len(new):
            waiting = [requests[i] for i in new[cut:]]
            reserved = [self._in_flight.reserve(r.tx.transaction_id, r.tx.digest) for r in waiting]
            for i, future in zip(new[cut:], reserved, strict=True):
                futures[i] = future
            self._lookups_waiting += 1
            self._recorder.spawn(self._look_up(waiting, reserved, needs_lookup[cut:]))
        for i, j in repeats:
            first_future = futures[j]
            assert first_future is not None
            futures[i] = as_replay(first_future)
        return [f for f in futures if f is not None]

    def _needs_lookup(self, tx: Transaction) -> bool:
        """Whether the audit store must be asked before this id can be scored as new."""
        engine = self._engine
        if engine.seen(tx.transaction_id):
            return True  # a retry of a decided payment (or one applied but not recorded)
        if not self._covers_store:
            return True
        # Older than the state remembers ids for: it cannot vouch that this one is new.
        return tx.epoch_ms <= engine.dedupe_floor_ms

    def _earlier(self, transaction_id: str, digest: str) -> asyncio.Future[Scored] | None:
        """The in-flight decision for this id (checked for a same body), or None."""
        pending = self._in_flight.get(transaction_id)
        if pending is None:
            return None
        check_same(transaction_id, pending.digest, digest)
        future = pending.future
        failed = future.done() and not future.cancelled() and future.exception() is not None
        if failed and pending.decision is not None:
            # Its audit write failed: the decision stands, so write it again.
            again = self._in_flight.reserve(transaction_id, digest, pending.decision)
            self._recorder.record([pending.decision], [again], retry=True)
            return again
        return as_replay(future)

    def _decide(
        self,
        requests: list[ScoreRequest],
        reserved: list[asyncio.Future[Scored] | None],
    ) -> list[asyncio.Future[Scored]]:
        """Run the fast path for new payments; their futures (``reserved`` ones reused).

        If anything fails before the decisions are handed to the recorder, every future
        of these payments is failed with the error and its id released (nobody may wait
        for a decision that will not come), then the error is raised.
        """
        futures: list[asyncio.Future[Scored]] = []
        try:
            drafts = self._fast_path.run(
                [r.tx for r in requests], [future is not None for future in reserved]
            )
            to_record: list[Decision] = []
            record_futures: list[asyncio.Future[Scored]] = []
            escalated: list[Draft] = []
            escalated_requests: list[ScoreRequest] = []
            escalated_futures: list[asyncio.Future[Scored]] = []
            refused: list[ScoreRequest] = []
            refused_futures: list[asyncio.Future[Scored]] = []
            for request, draft, future in zip(requests, drafts, reserved, strict=True):
                tx = request.tx
                known = isinstance(draft, IdempotencyConflict) or draft.replayed
                if known and future is None:
                    # The state knew an id it could not vouch for beforehand (a shared
                    # state, asked no earlier): the store has the last word. Without a
                    # record, a replayed payment is scored on the way back (its first
                    # features: a process stopped between the state and the record).
                    future = self._in_flight.reserve(tx.transaction_id, tx.digest)
                    refused.append(request)
                    refused_futures.append(future)
                    futures.append(future)
                    continue
                if isinstance(draft, IdempotencyConflict):
                    assert future is not None
                    self._in_flight.release(tx.transaction_id, future)
                    set_error(future, draft)
                    futures.append(future)
                    continue
                if future is None:
                    future = self._in_flight.reserve(tx.transaction_id, tx.digest)
                futures.append(future)
                if draft.view is None:
                    to_record.append(build_decision(draft, request.received, policy=self.policy))
                    record_futures.append(future)
                else:
                    escalated.append(draft)
                    escalated_requests.append(request)
                    escalated_futures.append(future)
        except Exception as exc:
            given = futures + [f for f in reserved[len(futures) :] if f is not None]
            self._abandon(requests, given, exc)
            raise
        self._recorder.record(to_record, record_futures)
        if refused:
            self._lookups_waiting += 1
            self._recorder.spawn(self._look_up(refused, refused_futures, [True] * len(refused)))
        if escalated:
            assert self._second is not None
            self._second.escalate(
                escalated,
                [r.received for r in escalated_requests],
                [r.budget_ms for r in escalated_requests],
                lambda decisions: self._recorder.record(decisions, escalated_futures),
                lambda exc: self._abandon(escalated_requests, escalated_futures, exc),
            )
        return futures

    def _abandon(
        self,
        requests: list[ScoreRequest],
        futures: list[asyncio.Future[Scored]],
        error: BaseException,
    ) -> None:
        """No decision will come for these: fail their futures and free their ids."""
        for request, future in zip(requests, futures, strict=False):
            self._in_flight.release(request.tx.transaction_id, future)
            set_error(future, error)

    async def _look_up(
        self,
        requests: list[ScoreRequest],
        futures: list[asyncio.Future[Scored]],
        needs_lookup: list[bool],
    ) -> None:
        """Ask the store about ids the feature state cannot vouch for, off the event loop;
        then score, in order, the payments it does not hold.

        ``requests`` are the payments from the first one that needed asking to the end of
        their call; the others (``needs_lookup`` False) only keep their place in line.
        Lookups run one at a time on one thread, so they finish in the order asked.
        """
        try:
            ids = [
                r.tx.transaction_id for r, ask in zip(requests, needs_lookup, strict=True) if ask
            ]
            try:
                loop = asyncio.get_running_loop()
                stored = await loop.run_in_executor(self._lookups, self._stored, ids)
            except Exception as exc:
                for request, future in zip(requests, futures, strict=True):
                    self._in_flight.release(request.tx.transaction_id, future)
                    fail(future, exc)
                return
            again: list[ScoreRequest] = []
            again_futures: list[asyncio.Future[Scored]] = []
            for request, future in zip(requests, futures, strict=True):
                tid = request.tx.transaction_id
                record = stored.get(tid)
                if record is not None:
                    self._in_flight.done(tid, future)
                    settle_replay(future, record, request.tx.digest)
                else:
                    again.append(request)
                    again_futures.append(future)
            if again:
                try:
                    self._decide(again, list(again_futures))
                except Exception:
                    log.exception("payments waiting for a lookup could not be scored")
        finally:
            self._lookups_waiting -= 1

    def _stored(self, ids: list[str]) -> dict[str, DecisionRecord]:
        """The store's records of ``ids`` (no read at all for none: a place in line)."""
        return self._store.get_many(ids) if ids else {}

    # ----------------------------------------------------------------- labels

    async def record_label(
        self, transaction_id: str, is_fraud: bool, labelled_at: datetime | None = None
    ) -> LabelOutcomeName:
        """See :meth:`LabelIntake.record`."""
        return await self._labels.record(transaction_id, is_fraud, labelled_at)

    async def record_labels(
        self, labels: list[tuple[str, bool, datetime | None]]
    ) -> list[LabelOutcomeName | NotFound | AuditUnavailable]:
        """See :meth:`LabelIntake.record_many`."""
        return await self._labels.record_many(labels)

    # ------------------------------------------------------------------ reads

    def decision(self, transaction_id: str) -> DecisionRecord | None:
        """The durable decision for a transaction id, with the second stage's attributions
        computed (blocking: call it off the event loop)."""
        record = self._store.get(transaction_id)
        return None if record is None else self.complete(record)

    def complete(self, record: DecisionRecord) -> DecisionRecord:
        """A stored record with its second stage's attributions computed, where the
        recorded sequence model is loaded (blocking: it reads the store and runs the model)."""
        model = None if self._cascade is None else self._cascade.model
        return complete_attributions(record, self._store, model)
