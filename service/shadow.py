"""Shadow scoring: a challenger model scores every decided payment after its answer, off
the request path, and its verdicts go to the audit store (``challenger_scores``).

After a decision is durable (the recorder settles its future, so its answer is on its
way), its feature vector exactly as decided and its id go into a bounded queue; a full
queue drops the payment and counts it (``riskscore_challenger_dropped_total{reason=
"queue_full"}``), never waiting. A task on the event loop drains the queue in slices of
a few payments — challenger fast model, exact TreeSHAP, reasons, action by its own
thresholds — and hands each slice's rows to the group-commit writer, which writes them
in the same transactions as decisions, off the loop.

Why on the loop in small slices, not in a thread: the SHAP kernels hold the GIL (they are
not ``nogil``), and a thread running Python between them makes the loop wait up to the
interpreter's switch interval (5 ms) each time it wants the GIL back. A slice of
:data:`SLICE` payments holds the loop for a bounded few hundred microseconds, then yields
to whatever requests are ready (``asyncio.sleep(0)``); the p99 with the shadow on and off
is measured by ``riskscore bench shadow`` (README).

The challenger's second stage is not run: its input is the customer's sequence as it
stood when the payment was decided, which has moved on by the time the shadow runs;
``sequence_score`` stays null. On shutdown what is queued is scored and written within
the shutdown timeout; a ``kill -9`` loses the queued payments' challenger rows (never a
decision: those were durable before they were queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from explain.audit.challenger_log import ChallengerLog, ChallengerScore
from explain.audit.store import AuditStoreError, Outcome
from explain.decision import Decision
from models.metrics import sigmoid
from models.versions import ModelVersion
from service.fast_path import ModelBundle

log = logging.getLogger(__name__)

# Payments per slice on the loop: ~25 µs each (model, SHAP, reasons, JSON), so a slice
# holds the loop ~0.2 ms before requests get their turn again.
SLICE = 8
DROP_REASONS = ("queue_full", "error", "store", "shutdown", "challenger_changed")


@dataclass(frozen=True)
class LoadedChallenger:
    """A challenger version loaded and checked: its fast model, explainer and reasons."""

    version: ModelVersion
    bundle: ModelBundle


class _Attribution(msgspec.Struct):
    feature: str
    value: float
    contribution: float


class _Explanation(msgspec.Struct):
    """A decision's explanation's JSON shape (explain.records.Explanation)."""

    method: str
    base_value: float
    raw_score: float
    attributions: list[_Attribution]


_ENCODER = msgspec.json.Encoder()


def score_slice(
    challenger: LoadedChallenger, decisions: Sequence[Decision]
) -> list[ChallengerScore]:
    """The challenger's verdict on each decision, from its feature values as decided."""
    bundle = challenger.bundle
    model, coder = bundle.model, bundle.coder
    x = np.stack([d.values for d in decisions])
    raw = model.predict_raw(x)
    scores = sigmoid(raw).tolist()
    contributions = bundle.explainer.contributions(x)
    reasons = coder.code_many(x, contributions)
    names = coder.feature_names
    k = len(names)
    thresholds = model.thresholds
    method = coder.schema.method
    now_ms = int(time.time() * 1000)
    rows = []
    for i, decision in enumerate(decisions):
        values, shap = x[i].tolist(), contributions[i].tolist()
        explanation = _Explanation(
            method,
            shap[k],
            float(raw[i]),
            [_Attribution(n, v, c) for n, v, c in zip(names, values, shap[:k], strict=True)],
        )
        rows.append(
            ChallengerScore(
                transaction_id=decision.transaction_id,
                model_version=model.version,
                event_time_ms=decision.transaction.epoch_ms,
                score=scores[i],
                action=thresholds.action(scores[i]),
                review_threshold=thresholds.review,
                decline_threshold=thresholds.decline,
                reasons_json=reasons[i].json.decode(),
                explanation_json=_ENCODER.encode(explanation).decode(),
                sequence_score=None,
                scored_at_ms=now_ms,
            )
        )
    return rows


class Shadow:
    """The bounded queue, the draining task and the counters of one process."""

    def __init__(
        self, store: ChallengerLog, capacity: int, registry: CollectorRegistry | None = None
    ) -> None:
        self._store = store
        self.capacity = capacity
        self.challenger: LoadedChallenger | None = None
        self._queue: deque[Decision] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[list[Outcome]]] = set()
        self._closing = False
        self.scored = 0
        self.dropped = 0
        registry = registry or CollectorRegistry()
        self._scored = Counter(
            "riskscore_challenger_scored",
            "Payments the shadow challenger scored and whose rows are durable.",
            registry=registry,
        )
        self._dropped = Counter(
            "riskscore_challenger_dropped",
            "Payments the shadow challenger did not score or store (queue_full: it fell "
            "behind; error: it failed; store: its rows were not written; shutdown: still "
            "queued at the end of the shutdown time; challenger_changed: queued for a "
            "challenger replaced or switched off).",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:
            self._dropped.labels(reason)  # on /metrics at 0 from the start
        self._depth = Gauge(
            "riskscore_challenger_queue_depth",
            "Payments waiting for the shadow challenger.",
            registry=registry,
        )
        self._depth.set_function(lambda: len(self._queue))

    # -- on the event loop -----------------------------------------------------------------

    def offer(self, decisions: Sequence[Decision]) -> None:
        """Queue durable decisions for the challenger, dropping (counted) what does not
        fit: called by the recorder as it settles their answers; never waits."""
        if self.challenger is None or self._closing:
            return
        room = self.capacity - len(self._queue)
        if room < len(decisions):
            self._drop("queue_full", len(decisions) - max(room, 0))
            decisions = decisions[: max(room, 0)]
        if not decisions:
            return
        self._queue.extend(decisions)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="riskscore-shadow")
        assert self._wake is not None
        self._wake.set()

    def install(self, challenger: LoadedChallenger | None) -> None:
        """Score with ``challenger`` from now on (None: switch the shadow off)."""
        if self._queue and (challenger is None or self.challenger is not challenger):
            self._drop("challenger_changed", len(self._queue))
            self._queue.clear()
        self.challenger = challenger

    def stats(self) -> dict[str, int]:
        """What ``GET /models`` shows under the challenger's ``shadow``."""
        return {
            "queued": len(self._queue),
            "scored": self.scored,
            "dropped": self.dropped,
            "queue_capacity": self.capacity,
        }

    async def close(self, timeout_s: float) -> None:
        """Score and write what is queued, within ``timeout_s``; what is left is dropped
        (counted as ``shutdown``). Before the audit store closes."""
        self._closing = True
        deadline = time.monotonic() + timeout_s
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue:
            self._drop("shutdown", len(self._queue))
            self._queue.clear()
        if self._writes:
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.wait(set(self._writes), timeout=remaining)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            challenger = self.challenger
            batch = [self._queue.popleft() for _ in range(min(SLICE, len(self._queue)))]
            if challenger is not None:
                self._score(challenger, batch)
            # Requests ready meanwhile go first; the next slice waits its turn.
            await asyncio.sleep(0)

    def _score(self, challenger: LoadedChallenger, batch: list[Decision]) -> None:
        try:
            rows = score_slice(challenger, batch)
        except Exception:
            log.exception("the challenger %s failed to score", challenger.version.version)
            self._drop("error", len(batch))
            return
        try:
            written: Future[list[Outcome]] = self._store.submit_challenger_scores(rows)
        except AuditStoreError as exc:
            log.error("challenger rows not written: %s", exc)
            self._drop("store", len(rows))
            return
        future = asyncio.wrap_future(written)
        self._writes.add(future)
        future.add_done_callback(partial(self._written, len(rows)))

    def _written(self, count: int, future: asyncio.Future[list[Outcome]]) -> None:
        self._writes.discard(future)
        try:
            outcomes: list[Any] = future.result()
        except Exception as exc:
            log.error("challenger rows not written: %s", exc)
            self._drop("store", count)
            return
        stored = sum(1 for outcome in outcomes if outcome is True)
        if stored:
            self.scored += stored
            self._scored.inc(stored)
        if stored < len(outcomes):
            log.error("challenger rows not written: %s", next(o for o in outcomes if o is not True))
            self._drop("store", len(outcomes) - stored)

    def _drop(self, reason: str, count: int) -> None:
        if count > 0:
            self.dropped += count
            self._dropped.labels(reason).inc(count)
