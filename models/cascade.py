"""The cascade policy: when the sequence stage runs, and what happens when it cannot.

The fast score decides alone outside the ambiguous band. Inside it the student runs if the
request's remaining budget allows: it is admitted when the time left (minus a reserve for
recording the decision) covers a running p99 of its recent latencies, times the work
already queued for its thread. Admitted work runs on its own thread under a timeout of the
time left. Not admitted, late or failed: the fast decision stands, marked as a fallback
with the reason (``budget``, ``timeout``, ``error``). The scorer never waits past the
deadline for the second stage.

A stage that has become slow (say a noisy neighbour) would never be admitted again, and
so never measured fast again; one request per ``probe_interval_s`` is admitted anyway
when it has any time left, so the estimate recovers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from features.sequence import SequenceView
from models.metrics import sigmoid
from models.sequence import SequenceModel

log = logging.getLogger(__name__)

DEFAULT_BUDGET_MS = 50.0
DEFAULT_RESERVE_MS = 10.0
# Recent latencies the p99 is taken over: enough for a stable tail, short enough to follow
# a change within seconds at serving rates.
LATENCY_WINDOW = 256


class InjectedFault(RuntimeError):
    """A failure injected on purpose (tests and demos of the fallback path)."""


@dataclass(frozen=True)
class FaultInjection:
    """Artificial delay and failures in the second stage."""

    delay_ms: float = 0.0
    error_rate: float = 0.0

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.error_rate > 0


@dataclass(frozen=True)
class SequenceResult:
    """What the second stage made of one payment, or why it did not decide."""

    decided: bool
    fallback_reason: str | None = None  # "budget" | "timeout" | "error" when not decided
    score: float | None = None  # the final (combined) probability
    sequence_score: float | None = None  # the student's own probability
    seconds: float = 0.0


class LatencyEstimate:
    """Running p99 of the stage's latency per sequence, seeded with the build-time figure.

    The percentile is recomputed after every ``REFRESH`` observations (or a reset), not on
    every read: a sort of the window per escalation cost more than the admission decision
    is worth, and a p99 a few observations old decides the same.
    """

    REFRESH = 8

    def __init__(self, prior_ms: float, window: int = LATENCY_WINDOW) -> None:
        self._prior_s = prior_ms / 1000.0
        self._samples: deque[float] = deque(maxlen=window)
        self._p99: float | None = None
        self._stale = 0

    def observe(self, seconds_per_sequence: float) -> None:
        self._samples.append(seconds_per_sequence)
        self._stale += 1
        if self._p99 is None or self._stale >= self.REFRESH:
            self._p99 = None  # recomputed at the next read

    def reset(self) -> None:
        """Forget past samples (after a probe shows the stage is fast again)."""
        self._samples.clear()
        self._p99 = None

    def p99(self) -> float:
        if not self._samples:
            return self._prior_s
        if self._p99 is None:
            self._p99 = float(np.percentile(np.fromiter(self._samples, dtype=np.float64), 99))
            self._stale = 0
        return self._p99


class Cascade:
    """Runs the sequence stage for in-band payments within their deadline."""

    def __init__(
        self,
        model: SequenceModel,
        *,
        reserve_ms: float = DEFAULT_RESERVE_MS,
        faults: FaultInjection | None = None,
        probe_interval_s: float = 1.0,
        rng: random.Random | None = None,
        inline: bool | None = None,
    ) -> None:
        self.model = model
        self.band = model.manifest.band
        self.combination = model.manifest.combination
        self._reserve_s = reserve_ms / 1000.0
        self._faults = faults or FaultInjection()
        self._probe_interval_s = probe_interval_s
        self._rng = rng or random.Random()
        # The stage scores sequences only; their attributions are computed when read.
        prior = model.manifest.latency_ms.get("student_single_p99", 2.0)
        self.latency = LatencyEstimate(prior)
        self._queued = 0  # sequences handed to the thread and not yet finished there
        self._last_admitted = time.perf_counter()
        # One thread: ONNX Runtime releases the GIL, and one worker keeps the stage from
        # taking more than one core away from the event loop. With a single core to run on,
        # though, that thread only waits for the loop's time slices: an escalated payment
        # then waited several milliseconds for a 0.3 ms model call (measured: p99 at 600/s
        # 32 ms with the thread, 14 ms with the stage off). So by default, on one core the
        # student runs inline, on the loop, between the injected fault and the deadline
        # check; it cannot then be abandoned mid-call, which its admission (p99 x work
        # within the time left) keeps short.
        self.inline = len(os.sched_getaffinity(0)) == 1 if inline is None else inline
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sequence-stage")

    def wants(self, fast_probability: float) -> bool:
        return self.band.contains(fast_probability)

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(
        self, views: Sequence[SequenceView], fast_raw: Sequence[float], deadline: float
    ) -> list[SequenceResult]:
        """Score in-band payments by the student, or say why not; never past ``deadline``.

        ``deadline`` is a ``time.perf_counter()`` instant; results come back in order.
        """
        n = len(views)
        started = time.perf_counter()
        left = deadline - started - self._reserve_s
        needed = self.latency.p99() * (self._queued + n)
        probing = started - self._last_admitted >= self._probe_interval_s
        if left <= 0 or (needed > left and not probing):
            return [SequenceResult(False, "budget")] * n
        self._last_admitted = started
        if self.inline:
            return await self._run_inline(views, fast_raw, started, left, probing)
        loop = asyncio.get_running_loop()
        try:
            job = loop.run_in_executor(self._executor, self._logits, [v.values for v in views])
        except RuntimeError as exc:  # the executor has been shut down
            log.warning("sequence stage unavailable, the fast score decides: %s", exc)
            return [SequenceResult(False, "error")] * n
        self._queued += n
        job.add_done_callback(lambda finished: self._done(finished, n))
        try:
            async with asyncio.timeout(left):
                await self._inject()
                logits = await asyncio.shield(job)
        except TimeoutError:
            seconds = time.perf_counter() - started
            # The whole wait, not a share of it: a batch that did not finish in ``left``
            # says nothing better of one sequence.
            self.latency.observe(seconds)
            return [SequenceResult(False, "timeout", seconds=seconds)] * n
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled: let it
            # The job was cancelled under us (shutdown): the fast score decides.
            return [SequenceResult(False, "error", seconds=time.perf_counter() - started)] * n
        except Exception as exc:
            log.warning("sequence stage failed, the fast score decides: %s", exc)
            return [SequenceResult(False, "error", seconds=time.perf_counter() - started)] * n
        return self._results(logits, fast_raw, started, probing)

    async def _run_inline(
        self,
        views: Sequence[SequenceView],
        fast_raw: Sequence[float],
        started: float,
        left: float,
        probing: bool,
    ) -> list[SequenceResult]:
        n = len(views)
        if self._closed:
            log.warning("sequence stage closed, the fast score decides")
            return [SequenceResult(False, "error")] * n
        try:
            async with asyncio.timeout(left):
                await self._inject()
            logits = self._logits([v.values for v in views])
        except TimeoutError:
            seconds = time.perf_counter() - started
            self.latency.observe(seconds)
            return [SequenceResult(False, "timeout", seconds=seconds)] * n
        except Exception as exc:
            log.warning("sequence stage failed, the fast score decides: %s", exc)
            return [SequenceResult(False, "error", seconds=time.perf_counter() - started)] * n
        return self._results(logits, fast_raw, started, probing)

    def _results(
        self, logits: list[float], fast_raw: Sequence[float], started: float, probing: bool
    ) -> list[SequenceResult]:
        n = len(logits)
        seconds = time.perf_counter() - started
        if probing:
            self.latency.reset()  # the probe is the freshest word on a stage seen as slow
        self.latency.observe(seconds / n)
        if not all(math.isfinite(logit) for logit in logits):
            log.warning("sequence stage returned a non-finite score, the fast score decides")
            return [SequenceResult(False, "error", seconds=seconds)] * n
        results = []
        for logit, raw in zip(logits, fast_raw, strict=True):
            results.append(
                SequenceResult(
                    True,
                    score=self.combination.combine(raw, logit),
                    sequence_score=float(sigmoid(logit)),
                    seconds=seconds / n,
                )
            )
        return results

    def _logits(self, sequences: list[np.ndarray]) -> list[float]:
        logits: list[float] = self.model.logits(np.stack(sequences)).tolist()
        return logits

    def _done(self, finished: asyncio.Future[list[float]], n: int) -> None:
        self._queued -= n
        if not finished.cancelled():
            finished.exception()  # retrieved: a late failure after a timeout is not news

    async def _inject(self) -> None:
        faults = self._faults
        if faults.delay_ms > 0:
            await asyncio.sleep(faults.delay_ms / 1000.0)
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            raise InjectedFault("injected second-stage failure")
