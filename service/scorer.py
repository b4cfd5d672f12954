"""The one scoring core behind every transport (HTTP today, Kafka next).

For each transaction: idempotency check → online features → fast model → exact SHAP
explanation → (second stage, inside the ambiguous band and the request's budget) →
decision policy → durable audit record → result. It knows no
HTTP or Kafka types: transports decode into :class:`~features.schema.Transaction`, call
:meth:`Scorer.score` or :meth:`Scorer.score_batch`, and encode what comes back.

Everything up to the second stage runs synchronously on the event loop: the work is well
under a millisecond, and doing it without an ``await`` is what keeps concurrent requests
from interleaving updates of the feature state or racing on the same transaction id. A
payment sent to the second stage is registered as pending before the ``await``, so a retry
of it waits for its decision rather than scoring it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from explain.audit.store import AuditStore, AuditStoreError
from explain.explainer import Explainer, make_explainer
from explain.reasons import DEFAULT_REASON_COUNT, ReasonCoder
from explain.records import (
    DecisionRecord,
    LabelOutcomeName,
    LabelRecord,
    PastTransactionAttribution,
    ThresholdsInForce,
)
from features.online import DuplicateTransaction, LabelOutcome, OnlineFeatureEngine
from features.schema import Transaction
from features.sequence import OnlineSequences, SequenceView
from models.cascade import DEFAULT_BUDGET_MS, Cascade, SequenceResult
from models.fast import FastModel, ModelSlot
from service.errors import AuditUnavailable, IdempotencyConflict, InvalidInput, NotFound
from service.metrics import ScoringMetrics

log = logging.getLogger(__name__)

FAST_STAGE = "fast"
SEQUENCE_STAGE = "sequence"


@dataclass(frozen=True)
class Scored:
    """A decision, and whether it was decided earlier (an idempotent retry)."""

    record: DecisionRecord
    replayed: bool


@dataclass
class _Pending:
    """A decision made but not yet durable: retries wait on it instead of re-scoring.

    ``record`` is None while the second stage is still deciding.
    """

    digest: str
    record: DecisionRecord | None
    future: asyncio.Future[Scored]


@dataclass(frozen=True)
class _ModelBundle:
    model: FastModel
    explainer: Explainer
    coder: ReasonCoder


@dataclass
class _Draft:
    """The fast path's work on one payment, before the second stage and the record."""

    tx: Transaction
    digest: str
    x: np.ndarray
    raw: float
    score: float
    contributions: np.ndarray
    timings: dict[str, float]
    view: SequenceView | None  # set when the payment goes to the second stage
    bundle: _ModelBundle  # the model that scored it, even if another is swapped in meanwhile


def request_digest(tx: Transaction) -> str:
    """SHA-256 of the transaction's canonical JSON: equal for equal content, whatever the
    key order or spacing of the request that carried it."""
    return hashlib.sha256(tx.model_dump_json().encode()).hexdigest()


def parse_transaction(data: object, prefix: str = "") -> Transaction:
    """Validate decoded JSON as a transaction; :class:`InvalidInput` names each bad field."""
    try:
        return Transaction.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None


class Scorer:
    """Scores transactions, records every decision, and takes label feedback."""

    def __init__(
        self,
        models: ModelSlot,
        store: AuditStore,
        *,
        engine: OnlineFeatureEngine | None = None,
        reason_count: int = DEFAULT_REASON_COUNT,
        metrics: ScoringMetrics | None = None,
        explainer_factory: Callable[[FastModel], Explainer] | None = None,
        cascade: Cascade | None = None,
        budget_ms: float = DEFAULT_BUDGET_MS,
    ) -> None:
        self._models = models
        self._store = store
        self._engine = engine or OnlineFeatureEngine()
        self._reason_count = reason_count
        self._metrics = metrics
        self._explainer_factory = explainer_factory or (lambda m: make_explainer("fast", m))
        self._bundle_cache: _ModelBundle | None = None
        self._pending: dict[str, _Pending] = {}
        self._writing_labels: dict[tuple[str, bool, datetime | None], asyncio.Future[None]] = {}
        self._cascade = cascade
        self._budget_ms = budget_ms
        self._sequences = None if cascade is None else OnlineSequences(cascade.model.spec)
        self._escalations: set[asyncio.Task[None]] = set()
        self.warmed = False
        self.warm_error: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def store(self) -> AuditStore:
        return self._store

    @property
    def model_version(self) -> str:
        return self._models.model.version

    @property
    def engine(self) -> OnlineFeatureEngine:
        return self._engine

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
        return problems

    def warm_start(
        self, from_store: bool = True, progress: Callable[[int], object] | None = None
    ) -> int:
        """Get ready to score: rebuild the feature state, then run the hot path once.

        With ``from_store``, replays the stored transactions that any window can still see
        (the longest window plus its delay back from the latest one), then applies their
        latest labels: the state a process that never stopped would hold. Returns the
        transactions replayed.
        """
        latest = self._store.latest_event_ms() if from_store else None
        replayed = 0
        if latest is not None:
            since = latest - self._engine.plan.longest_horizon_ms
            for event in self._store.replay_events(since):
                try:
                    self._engine.update_raw(
                        event.transaction_id,
                        event.customer_id,
                        event.terminal_id,
                        event.epoch_ms,
                        event.local_epoch_ms,
                        event.amount,
                    )
                except DuplicateTransaction:
                    continue  # already applied by an earlier warm start of this engine
                replayed += 1
                if progress is not None and replayed % 10_000 == 0:
                    progress(10_000)
            for transaction_id, is_fraud in self._store.latest_labels(since):
                self._engine.record_label(transaction_id, is_fraud)
            self._rebuild_sequences(latest)
        if progress is not None:
            progress(replayed % 10_000)
        self._compile_hot_path()
        self.warmed = True
        return replayed

    def _rebuild_sequences(self, latest_ms: int) -> None:
        """Refill the customers' sequences with the feature vectors as they were decided.

        Not from the replay above: it applies labels only at its end, so its vectors lack
        the label-dependent values the fast path saw at the time.
        """
        sequences = self._sequences
        if sequences is None:
            return
        spec = sequences.spec
        for stored in self._store.recent_feature_vectors(latest_ms - spec.max_age_ms, spec.length):
            x = np.array([stored.features.get(name, np.nan) for name in spec.feature_names])
            sequences.append(
                stored.customer_id, stored.transaction_id, stored.epoch_ms, stored.amount, x
            )

    def _compile_hot_path(self) -> None:
        """Run every scoring step once on scratch state, so the first real payment does not
        pay for loading compiled kernels and LightGBM's lazy set-up (~0.4 s measured)."""
        scratch = OnlineFeatureEngine(tuple(slot.definition for slot in self._engine.plan.slots))
        day = 86_400_000
        for i, t in enumerate((day, 2 * day, 10 * day)):
            x = scratch.update_raw(f"warm-{i}", "c", "t", t, t, 10.0 + i)
        scratch.record_label("warm-0", True)
        scratch.expire(100 * day)
        scratch.compile_kernels()
        bundle = self._bundle()
        row = x.reshape(1, -1)
        bundle.model.predict_raw(row)
        contributions = bundle.explainer.contributions(row)
        bundle.coder.reason_data(x, contributions[0])
        if self._cascade is not None:
            spec = self._cascade.model.spec
            sequence = np.zeros((spec.length, spec.width))
            sequence[-2:, -1] = 1.0
            self._cascade.model.explain([sequence])

    def _bundle(self) -> _ModelBundle:
        model = self._models.model
        cached = self._bundle_cache
        if cached is None or cached.model is not model:
            # The explainer and reason coder follow the model: a swap rebuilds them once.
            cached = _ModelBundle(
                model,
                self._explainer_factory(model),
                ReasonCoder(model.feature_names, self._reason_count),
            )
            self._bundle_cache = cached
        return cached

    async def drain(self, timeout_s: float) -> None:
        """Wait for second-stage decisions still in flight, then stop the stage's thread."""
        if self._escalations:
            await asyncio.wait(set(self._escalations), timeout=timeout_s)
        if self._cascade is not None:
            self._cascade.close()

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
        digest = request_digest(tx)
        earlier = self._earlier(tx.transaction_id, digest)
        if earlier is not None:
            return await asyncio.shield(earlier)
        draft = self._decide([tx], [digest], started)[0]
        if isinstance(draft, IdempotencyConflict):
            raise draft
        if draft.view is None:
            # Shielded: a cancelled request must not cancel the write retries wait on.
            return await asyncio.shield(self._register(self._finish(draft, started), digest))
        future = self._reserve(tx.transaction_id, digest)
        self._escalate([draft], [future], started, budget_ms)
        return await asyncio.shield(future)

    async def score_batch(
        self,
        items: list[Transaction],
        received: float | None = None,
        budget_ms: float | None = None,
    ) -> list[Scored | IdempotencyConflict]:
        """Decide many transactions together (one model call, one explainer call).

        Items are applied to the feature state in the order given. Each gets its own
        result: a decision, or the conflict that refused it; the rest still score. The
        in-band ones share one second-stage call and the budget (see :meth:`score`).
        """
        started = time.perf_counter() if received is None else received
        results: list[Scored | IdempotencyConflict | None] = [None] * len(items)
        waits: dict[int, asyncio.Future[Scored]] = {}
        fresh: list[int] = []
        digests: dict[int, str] = {}
        first_in_batch: dict[str, int] = {}
        for i, tx in enumerate(items):
            digest = digests[i] = request_digest(tx)
            try:
                earlier = self._earlier(tx.transaction_id, digest)
                if earlier is None and tx.transaction_id in first_in_batch:
                    j = first_in_batch[tx.transaction_id]
                    _check_same(tx.transaction_id, digests[j], digest)
                    continue  # a repeat inside the batch: settled below with its first
            except IdempotencyConflict as exc:
                results[i] = exc
                continue
            if earlier is not None:
                waits[i] = earlier
            else:
                first_in_batch[tx.transaction_id] = i
                fresh.append(i)
        decided = self._decide([items[i] for i in fresh], [digests[i] for i in fresh], started)
        escalated: list[_Draft] = []
        reserved: list[asyncio.Future[Scored]] = []
        for i, draft in zip(fresh, decided, strict=True):
            if isinstance(draft, IdempotencyConflict):
                results[i] = draft
            elif draft.view is None:
                waits[i] = self._register(self._finish(draft, started), digests[i])
            else:
                waits[i] = self._reserve(draft.tx.transaction_id, digests[i])
                escalated.append(draft)
                reserved.append(waits[i])
        if escalated:
            self._escalate(escalated, reserved, started, budget_ms)
        settled = await asyncio.shield(asyncio.gather(*waits.values(), return_exceptions=True))
        for i, outcome in zip(waits, settled, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome  # the audit store failed: nothing of the batch is answered
            results[i] = outcome
        for i, tx in enumerate(items):
            if results[i] is None:
                first = results[first_in_batch[tx.transaction_id]]
                # A repeat shares its first copy's fate: the decision, or its refusal.
                results[i] = (
                    Scored(first.record, replayed=True) if isinstance(first, Scored) else first
                )
        return [r for r in results if r is not None]

    def _earlier(self, transaction_id: str, digest: str) -> asyncio.Future[Scored] | None:
        """The earlier decision for this id (pending or stored), checked for a same body."""
        pending = self._pending.get(transaction_id)
        if pending is not None:
            _check_same(transaction_id, pending.digest, digest)
            failed = pending.future.done() and pending.future.exception() is not None
            if failed and pending.record is not None:
                # Its audit write failed: the decision stands, so write it again.
                return self._register(pending.record, digest, retry=True)
            return _as_replay(pending.future)
        stored = self._store.get(transaction_id)
        if stored is None:
            return None
        _check_same(transaction_id, stored.request_sha256, digest)
        done: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        done.set_result(Scored(stored, replayed=True))
        return done

    def _decide(
        self, txs: list[Transaction], digests: list[str], started: float
    ) -> list[_Draft | IdempotencyConflict]:
        if not txs:
            return []
        bundle = self._bundle()
        model = bundle.model
        t0 = time.perf_counter()
        x = np.empty((len(txs), len(model.feature_names)), dtype=np.float64)
        refused: dict[int, IdempotencyConflict] = {}
        sequences = self._sequences
        # A view is built (~50 µs) only for payments in the band, after scoring, except
        # where a later payment of the same customer in this batch joins the ring first:
        # that one's view is taken right after its own append, before the later one's.
        views: list[SequenceView | None] = [None] * len(txs)
        last_of_customer = {tx.customer_id: i for i, tx in enumerate(txs)}
        for i, tx in enumerate(txs):
            try:
                self._engine.update(tx, out=x[i])
            except DuplicateTransaction:
                # In the feature state but with no decision on record (a process that
                # stopped between the two): scoring it again would count it twice.
                refused[i] = IdempotencyConflict(
                    f"transaction {tx.transaction_id!r} was already applied to the feature "
                    "state but has no recorded decision; send it with a new id"
                )
                continue
            if sequences is not None:
                sequences.append(tx.customer_id, tx.transaction_id, tx.epoch_ms, tx.amount, x[i])
                if last_of_customer[tx.customer_id] != i:
                    views[i] = sequences.view(tx.customer_id, tx.epoch_ms)
        t1 = time.perf_counter()
        raw = model.predict_raw(x)
        scores = 1.0 / (1.0 + np.exp(-raw))
        t2 = time.perf_counter()
        contributions = bundle.explainer.contributions(x)
        t3 = time.perf_counter()
        n = len(txs)
        # Per transaction; in a batch each stage's time is shared out evenly.
        timings = {
            "features": _ms((t1 - t0) / n),
            "model": _ms((t2 - t1) / n),
            "explain": _ms((t3 - t2) / n),
        }
        cascade = self._cascade
        out: list[_Draft | IdempotencyConflict] = []
        for i, tx in enumerate(txs):
            if i in refused:
                out.append(refused[i])
                continue
            score = float(scores[i])
            view = None
            if cascade is not None and sequences is not None and cascade.wants(score):
                view = views[i] or sequences.view(tx.customer_id, tx.epoch_ms)
            out.append(
                _Draft(
                    tx,
                    digests[i],
                    x[i],
                    float(raw[i]),
                    score,
                    contributions[i],
                    timings,
                    view,
                    bundle,
                )
            )
        return out

    def _finish(
        self, draft: _Draft, started: float, second: SequenceResult | None = None
    ) -> DecisionRecord:
        """The decision record: the fast path's, or the second stage's when it decided."""
        bundle = draft.bundle
        model = bundle.model
        thresholds = model.thresholds
        score = draft.score
        fields: dict[str, Any] = {"stage": FAST_STAGE, "fallback": False}
        timings = draft.timings
        if second is not None:
            timings = {**timings, "sequence": _ms(second.seconds)}
            if second.decided and second.score is not None:
                score = second.score
                fields = {
                    "stage": SEQUENCE_STAGE,
                    "fallback": False,
                    "sequence": self._sequence_explanation(draft, second),
                }
            else:
                fields = {
                    "stage": FAST_STAGE,
                    "fallback": True,
                    "fallback_reason": second.fallback_reason,
                }
        return DecisionRecord.model_validate(
            {
                "transaction": draft.tx,
                "request_sha256": draft.digest,
                "decided_at": datetime.now(UTC),
                "score": score,
                "action": thresholds.action(score),
                **fields,
                "model_version": model.version,
                "reasons": bundle.coder.reason_data(draft.x, draft.contributions),
                "explanation": bundle.coder.explanation_data(
                    bundle.explainer.method, draft.x, draft.contributions, draft.raw
                ),
                "thresholds": ThresholdsInForce(
                    review=thresholds.review, decline=thresholds.decline
                ),
                "timings_ms": timings,
                "latency_ms": _ms(time.perf_counter() - started),
            }
        )

    def _sequence_explanation(self, draft: _Draft, second: SequenceResult) -> dict[str, Any]:
        assert self._cascade is not None and draft.view is not None
        view = draft.view
        effects = second.contributions if second.contributions is not None else np.empty(0)
        earlier: list[PastTransactionAttribution] = [
            {
                "transaction_id": str(view.transaction_ids[k]),
                "timestamp": _iso(view.epoch_ms[k]),
                "amount": view.amounts[k],
                "contribution": float(effects[k]),
            }
            for k in range(len(effects))
        ]
        return {
            "method": "occlusion",
            "model_version": self._cascade.model.version,
            "fast_score": draft.score,
            "sequence_score": second.sequence_score,
            "combination": self._cascade.combination.describe(),
            "attributions": earlier[::-1],
        }

    def _escalate(
        self,
        drafts: list[_Draft],
        futures: list[asyncio.Future[Scored]],
        started: float,
        budget_ms: float | None,
    ) -> None:
        """Run the second stage for reserved payments in a task, then record them.

        A task, not an ``await`` in the request: a client that disconnects must not
        cancel a decision other retries are already waiting for.
        """
        budget = self._budget_ms if budget_ms is None else budget_ms
        deadline = started + budget / 1000.0
        task = asyncio.create_task(self._second_stage(drafts, futures, started, deadline))
        self._escalations.add(task)
        task.add_done_callback(self._escalations.discard)

    async def _second_stage(
        self,
        drafts: list[_Draft],
        futures: list[asyncio.Future[Scored]],
        started: float,
        deadline: float,
    ) -> None:
        assert self._cascade is not None
        views = [d.view for d in drafts if d.view is not None]
        error = SequenceResult(False, "error")
        try:
            results = await self._cascade.run(views, [d.raw for d in drafts], deadline)
        except Exception:
            # Whatever went wrong, the fast decision stands: the stage is an extra.
            log.exception("the sequence stage failed; the fast score decides")
            results = [error] * len(drafts)
        for draft, future, result in zip(drafts, futures, results, strict=True):
            try:
                record = self._finish(draft, started, result)
            except Exception:
                log.exception("the sequence stage's result was unusable; the fast score decides")
                record = self._finish(draft, started, error)
            self._submit(record, future)

    def _register(
        self, record: DecisionRecord, digest: str, retry: bool = False
    ) -> asyncio.Future[Scored]:
        """Submit the record for a durable write; the future settles once it is on disk.

        Registered synchronously, before any ``await``, so that a concurrent request with
        the same id finds it and waits instead of scoring again.
        """
        future = self._reserve(record.transaction_id, digest, record)
        self._submit(record, future, retry)
        return future

    def _reserve(
        self, transaction_id: str, digest: str, record: DecisionRecord | None = None
    ) -> asyncio.Future[Scored]:
        """Mark an id as being decided; the future settles once its record is durable."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._pending[transaction_id] = _Pending(digest, record, future)
        return future

    def _submit(
        self, record: DecisionRecord, future: asyncio.Future[Scored], retry: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending.get(record.transaction_id)
        if pending is not None and pending.future is future:
            pending.record = record
        submitted = time.perf_counter()
        try:
            written = self._store.submit(record)
        except AuditStoreError as exc:
            self._fail(future, exc)
            return

        def on_written(done: Future[bool]) -> None:
            loop.call_soon_threadsafe(self._settle, record, future, done, submitted, retry)

        written.add_done_callback(on_written)

    def _settle(
        self,
        record: DecisionRecord,
        future: asyncio.Future[Scored],
        written: Future[bool],
        submitted: float,
        retry: bool,
    ) -> None:
        try:
            error = written.exception()
            if error is not None:
                self._fail(future, error)
                return
            self._pending.pop(record.transaction_id, None)
            if written.result():
                outcome = Scored(record, replayed=retry)
                if self._metrics is not None:
                    self._metrics.observe_decision(record, time.perf_counter() - submitted)
            else:
                # Another writer stored this id first; its record is the decision.
                stored = self._store.get(record.transaction_id)
                outcome = Scored(stored or record, replayed=True)
            if not future.done():
                future.set_result(outcome)
        except Exception as exc:  # whatever happens here, nobody may be left waiting
            self._fail(future, exc)

    @staticmethod
    def _fail(future: asyncio.Future[Scored], error: BaseException) -> None:
        # The cause (file paths, SQL) goes to the log, not to the client.
        log.error("a decision could not be recorded: %s", error)
        if not future.done():
            future.set_exception(
                AuditUnavailable(
                    "the decision could not be recorded; retry with the same transaction_id"
                )
            )
            # Mark retrieved: waiters re-raise it, and nobody waiting is no error.
            future.exception()

    # ----------------------------------------------------------------- labels

    async def record_label(
        self, transaction_id: str, is_fraud: bool, labelled_at: datetime | None = None
    ) -> LabelOutcomeName:
        """Record a label durably, then feed it into the feature state.

        Returns ``applied`` (the state changed), ``unchanged`` (the same label was known)
        or ``recorded`` (stored for reports; too old for any feature window). Raises
        :class:`NotFound` unless the transaction has a recorded decision (waiting for one
        still being written), :class:`AuditUnavailable` if the label cannot be stored.
        """
        pending = self._pending.get(transaction_id)
        if pending is not None:
            try:
                await asyncio.shield(_as_replay(pending.future))
            except AuditUnavailable:
                raise NotFound(
                    f"the decision for transaction {transaction_id!r} was not recorded"
                ) from None
        elif self._store.get(transaction_id) is None:
            raise NotFound(f"no decision recorded for transaction {transaction_id!r}")
        # Labels are idempotent by content: a re-delivered or repeated label (same verdict,
        # same time) is not stored again, whether it is still being written or already is.
        key = (transaction_id, is_fraud, labelled_at)
        writing = self._writing_labels.get(key)
        if writing is not None:
            await asyncio.shield(writing)
            return "unchanged"
        known = self._store.labels(transaction_id)
        if known and (known[-1].is_fraud, known[-1].labelled_at) == (is_fraud, labelled_at):
            return "unchanged"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing_labels[key] = done
        try:
            return await self._store_label(transaction_id, is_fraud, labelled_at)
        finally:
            del self._writing_labels[key]
            done.set_result(None)

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
            log.error("a label could not be recorded: %s", exc)
            raise AuditUnavailable("the label could not be recorded; retry") from None
        # Only a durable label changes the state: a failed one is retried, not half-applied.
        outcome = self._engine.record_label(transaction_id, is_fraud)
        reported: LabelOutcomeName = (
            "recorded" if outcome is LabelOutcome.UNKNOWN else outcome.value  # type: ignore[assignment]
        )
        if self._metrics is not None:
            self._metrics.observe_label(reported)
        return reported

    async def record_labels(
        self, labels: list[tuple[str, bool, datetime | None]]
    ) -> list[LabelOutcomeName | NotFound | AuditUnavailable]:
        """Many labels at once, sharing group commits; each gets its outcome or error."""
        settled = await asyncio.gather(
            *(self.record_label(*label) for label in labels), return_exceptions=True
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

    def decision(self, transaction_id: str) -> DecisionRecord | None:
        """The durable decision for a transaction id, or None."""
        return self._store.get(transaction_id)


def _check_same(transaction_id: str, known: str, digest: str) -> None:
    if known != digest:
        raise IdempotencyConflict(
            f"transaction {transaction_id!r} was already scored with a different body; "
            "a transaction_id identifies one payment and cannot be reused"
        )


def _as_replay(future: asyncio.Future[Scored]) -> asyncio.Future[Scored]:
    """A future giving the same decision as ``future``, marked as a replay."""
    replay: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()

    def copy(done: asyncio.Future[Scored]) -> None:
        if replay.done():
            return
        error = done.exception()
        if error is not None:
            replay.set_exception(error)
            replay.exception()
        else:
            replay.set_result(Scored(done.result().record, replayed=True))

    future.add_done_callback(copy)
    return replay


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).isoformat().replace("+00:00", "Z")
