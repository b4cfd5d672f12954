"""Adaptive micro-batching: requests that arrive together are scored together.

When the service is busy, several ``/score`` requests are read from their sockets in the
same turn of the event loop. Each handler hands its payment here and waits; the first one
schedules a flush with ``loop.call_soon``, which runs after every callback already queued
in that turn — the other handlers included — so the flush takes all of them as one batch
through the scorer's batch path (one feature-kernel call, one model call, one explainer
call, one audit group). No timer is involved: a payment waits at most for the rest of the
current loop turn, and a batch holds at most ``max_batch`` payments (the rest go in the
next flush, scheduled at once). A request reaching an idle server is a batch of one,
scored in the next loop turn, microseconds later. Payments are applied to the feature
state in arrival order, as without batching.
"""

from __future__ import annotations

import asyncio
from functools import partial

from service.in_flight import Scored
from service.scorer import Scorer, ScoreRequest

DEFAULT_MAX_BATCH = 64


class MicroBatcher:
    """Gathers the payments of one loop turn and submits them to the scorer together."""

    def __init__(self, scorer: Scorer, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._scorer = scorer
        self._max_batch = max_batch
        self._waiting: list[tuple[ScoreRequest, asyncio.Future[Scored]]] = []
        self._scheduled = False
        self.batches = 0  # flushes so far (for metrics and tests)
        self.payments = 0

    def submit(self, request: ScoreRequest) -> asyncio.Future[Scored]:
        """The future of this payment's decision (as :meth:`Scorer.submit` gives it)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Scored] = loop.create_future()
        self._waiting.append((request, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return answer

    def _flush(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._scheduled = False
        self.batches += 1
        self.payments += len(batch)
        try:
            decided = self._scorer.submit([request for request, _ in batch])
        except Exception as exc:  # e.g. no model loaded: every waiting request is told
            for _, answer in batch:
                _fail(answer, exc)
            return
        for (_, answer), future in zip(batch, decided, strict=True):
            future.add_done_callback(partial(_copy, answer=answer))


def _copy(done: asyncio.Future[Scored], *, answer: asyncio.Future[Scored]) -> None:
    if answer.done():
        return  # its request went away; the decision stands and is recorded regardless
    if done.cancelled():
        answer.cancel()
        return
    error = done.exception()
    if error is not None:
        _fail(answer, error)
    else:
        answer.set_result(done.result())


def _fail(answer: asyncio.Future[Scored], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)
        answer.exception()  # retrieved: a request that went away is no error to log
