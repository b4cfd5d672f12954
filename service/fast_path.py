"""The fast path for a batch of payments: features, model, exact SHAP, reasons.

One call per stage for the whole batch — one feature-kernel call, one model call, one
explainer call — so a batch of n payments costs far less than n single ones; a single
payment is a batch of one. Payments are applied to the feature state in the order given.
The payments whose fast score falls inside the second stage's band come back with the
sequence view the stage will look at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explain.decision import Reasons
from explain.explainer import Explainer
from explain.reasons import ReasonCoder
from features.schema import Transaction
from features.sequence import SequenceStore, SequenceView
from features.state import FeatureState, FeatureStateUnavailable
from models.cascade import Cascade
from models.fast import FastModel, ModelSlot
from models.metrics import sigmoid
from service.errors import FeatureStateDown, IdempotencyConflict


@dataclass(frozen=True)
class ModelBundle:
    """A fast model with the explainer and reason coder built for it, and the second stage
    paired with it (None: none matches it, or the stage is off). A payment takes one bundle
    at its start and keeps it to its decision, so a promotion meanwhile never mixes two
    versions in one decision."""

    model: FastModel
    explainer: Explainer
    coder: ReasonCoder
    cascade: Cascade | None = None


@dataclass(slots=True)
class Draft:
    """The fast path's work on one payment, before the second stage and the record."""

    tx: Transaction
    values: np.ndarray  # (k,) feature values
    raw: float
    score: float
    contributions: np.ndarray  # (k + 1,) exact SHAP, the base value last
    reasons: Reasons
    timings: dict[str, float]  # per payment; in a batch, each stage's time shared evenly
    view: SequenceView | None  # set when the payment goes to the second stage
    bundle: ModelBundle  # the model that scored it, even if another is swapped in meanwhile
    # Already applied to the feature state with this payload (a re-delivery): the values
    # are the ones it was first given. Scored like any other, but a stored decision wins.
    replayed: bool = False


def ms(seconds: float) -> float:
    """Milliseconds as recorded in timings: rounded to 0.1 µs."""
    return round(seconds * 1000.0, 4)


class FastPath:
    """Runs the fast path; owns the per-model bundle cache."""

    def __init__(
        self,
        models: ModelSlot,
        engine: FeatureState,
        explainer_factory: Callable[[FastModel], Explainer],
        reason_count: int,
        cascade: Cascade | None,
        sequences: SequenceStore | None,
    ) -> None:
        self._models = models
        self._engine = engine
        self._explainer_factory = explainer_factory
        self._reason_count = reason_count
        self._cascade = cascade
        self._sequences = sequences
        self._bundle_cache: ModelBundle | None = None

    def prepare(self, model: FastModel, cascade: Cascade | None) -> ModelBundle:
        """The bundle for ``model`` (its explainer's tables built now: call it off the
        event loop for a model about to be promoted)."""
        explainer = self._explainer_factory(model)
        coder = ReasonCoder(model.feature_names, self._reason_count, method=explainer.method)
        return ModelBundle(model, explainer, coder, cascade)

    def install(self, bundle: ModelBundle) -> ModelBundle:
        """Serve ``bundle`` from the next payment on; returns the one it replaces."""
        old = self.bundle()
        self._models.put(bundle.model)
        self._bundle_cache = bundle
        self._cascade = bundle.cascade
        return old

    def bundle(self) -> ModelBundle:
        model = self._models.model
        cached = self._bundle_cache
        if cached is None or cached.model is not model:
            # The model was swapped in its slot directly: the explainer and reason coder
            # follow it (built once), the second stage stays as it was.
            cached = self.prepare(model, self._cascade)
            self._bundle_cache = cached
        return cached

    def run(
        self, txs: list[Transaction], asked: list[bool] | None = None
    ) -> list[Draft | IdempotencyConflict]:
        """Decide ``txs`` on the fast path, in order; one result per payment.

        ``asked``: per payment, whether the audit store was asked about its id already. A
        payment the state replays (it knows the id) without that is not added to its
        customer's sequence: the store may hold its decision (a plain retry), and a retry
        whose position the sequence has trimmed since would be appended again, at the end.
        """
        if not txs:
            return []
        bundle = self.bundle()
        t0 = time.perf_counter()
        try:
            update = self._engine.update_all(txs, [tx.digest for tx in txs])
        except FeatureStateUnavailable as exc:
            raise FeatureStateDown(f"{exc}; retry with the same transaction_id") from None
        refused = set(update.refused)
        accepted = [i for i in range(len(txs)) if i not in refused] if refused else None
        x = update.values if accepted is None else update.values[accepted]
        kept = txs if accepted is None else [txs[i] for i in accepted]
        if not kept:
            return [_applied_without_record(tx) for tx in txs]
        t1 = time.perf_counter()
        raw = bundle.model.predict_raw(x)
        scores = sigmoid(raw)
        raw_list, score_list = raw.tolist(), scores.tolist()
        t2 = time.perf_counter()
        again = set(update.replayed)
        positions = range(len(txs)) if accepted is None else accepted
        unasked = [at in again and not (asked is not None and asked[at]) for at in positions]
        views = self._append_sequences(kept, x, score_list, bundle.cascade, unasked)
        t3 = time.perf_counter()
        contributions = bundle.explainer.contributions(x)
        t4 = time.perf_counter()
        reasons = bundle.coder.code_many(x, contributions)
        n = len(kept)
        # The sequences are the feature state's too: their upkeep counts as features.
        timings = {"features": ms((t1 - t0 + t3 - t2) / n), "model": ms((t2 - t1) / n)}
        timings["explain"] = ms((t4 - t3) / n)
        drafts: list[Draft] = []
        for i, (tx, at) in enumerate(zip(kept, positions, strict=True)):
            drafts.append(
                Draft(
                    tx,
                    x[i],
                    raw_list[i],
                    score_list[i],
                    contributions[i],
                    reasons[i],
                    timings,
                    views[i],
                    bundle,
                    at in again,
                )
            )
        if not refused:
            return list[Draft | IdempotencyConflict](drafts)
        out: list[Draft | IdempotencyConflict] = []
        it = iter(drafts)
        for i, tx in enumerate(txs):
            out.append(_applied_without_record(tx) if i in refused else next(it))
        return out

    def _append_sequences(
        self,
        txs: list[Transaction],
        x: np.ndarray,
        scores: list[float],
        cascade: Cascade | None,
        left_out: list[bool],
    ) -> list[SequenceView | None]:
        """Add each payment to its customer's sequence; the view the second stage will see
        for each payment in its band.

        A view (~50 µs) is built only for payments in the band, right after the payment's
        own append: before a later payment of the same customer in this batch joins the ring.
        """
        sequences = self._sequences
        views: list[SequenceView | None] = [None] * len(txs)
        if sequences is None:
            return views
        if any(left_out):
            rows = [i for i, out in enumerate(left_out) if not out]
            txs, x, scores = [txs[i] for i in rows], x[rows], [scores[i] for i in rows]
        else:
            rows = list(range(len(txs)))
        if not rows:
            return views
        # Kept up even while the served version has no second stage: a later one may.
        appended = sequences.append_many(
            [tx.customer_id for tx in txs],
            [tx.transaction_id for tx in txs],
            [tx.epoch_ms for tx in txs],
            [tx.amount for tx in txs],
            x,
            [cascade is not None and cascade.wants(score) for score in scores],
        )
        for i, view in zip(rows, appended, strict=True):
            views[i] = view
        return views


def _applied_without_record(tx: Transaction) -> IdempotencyConflict:
    # In the feature state but with no decision on record, and the state cannot give its
    # first features back (another body under the id, or the in-process state, which
    # keeps none): scoring it again would count it twice.
    return IdempotencyConflict(
        f"transaction {tx.transaction_id!r} was already applied to the feature state with "
        "another body (or could not be replayed) and has no recorded decision; send it with "
        "a new id"
    )
