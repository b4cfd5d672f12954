"""Admission control: refuse at once (429) what could not be answered within its budget.

Without it an overloaded service queues every request and answers all of them late: at
2.6× its capacity, every admitted payment waited ~4.6 s (issue 15), far past any payment
backend's timeout, so every one of them was wasted work. Here each payment is weighed
before it touches the feature state or the audit store:

    predicted wait = (payments admitted and not yet answered + these) × service time

where the service time is the time the process takes per decision *while busy* (its
throughput's inverse), an exponentially weighted mean of the gaps between answers. When
the predicted wait exceeds what is left of the request's budget (``X-Deadline-Ms``, or the
default), the request is refused with ``429`` and ``Retry-After``; nothing of it is
scored or recorded, so a retry is safe. The estimate starts at ``initial_service_ms``
until answers have measured it.

Gaps are counted only while at least ``MIN_QUEUE`` payments are queued, and below that
depth nothing is shed. With a payment or two in flight, the gap between answers is one
payment's *latency* (an fsync, a thread hand-off), not the process's throughput: measured
there, the estimate came out at ~20 ms a decision on a machine deciding 300/s in
micro-batches, so only two payments fit a 50 ms budget, which kept the queue shallow, the
gaps long and the estimate high — admission control itself collapsed throughput to about
one payment a second (``riskscore bench overload``, shared 2-core machine). From
``MIN_QUEUE`` on, micro-batches and group commits fill and the gaps measure throughput.

The busy time is summed over a window of ``WINDOW`` answers before it becomes one sample
(busy time / answers). Answers come in micro-batches: one long gap, then up to 63 gaps of
~0. Capping each gap against a stall (below) therefore cut every batch's one real gap and
drove the estimate towards zero, so that nothing was shed at 3x capacity (every admitted
payment waited ~5.5 s). A window spans several batches, so it is the window's sample that
is capped.

The wait before the handler — in the socket, while the event loop is saturated — is added to
the prediction as the loop's measured lateness (``loop_lag.py``).

Per-API-key rates (``rate_limit.py``) are checked first: a key over its rate is refused
the same way, with its own reason. Both count in ``riskscore_shed_total{reason}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.errors import Overloaded, RateLimited
from service.rate_limit import RateLimits

# Answers summed into one sample of the service time: several micro-batches (64 each), whose
# answers arrive together (one long gap, then ~0 gaps).
WINDOW = 256
# Weight of one window's sample in the mean: a few windows (~1,000 payments) make the estimate.
ALPHA = 0.25

# Below this many payments queued nothing is shed and no gap is sampled (see above).
MIN_QUEUE = 8
# A window whose time per answer is longer than this many estimates held a stall (a
# checkpoint's snapshot, a collection of the garbage collector, the process descheduled),
# not the pace of service: it counts as this many, so one stall cannot set the estimate and
# shed for a while.
STALL_FACTOR = 8.0

DEADLINE, RATE_LIMIT = "deadline", "rate_limit"


class AdmissionControl:
    """The process's queue of admitted payments and its measured pace. Event loop only."""

    def __init__(
        self,
        default_budget_ms: float,
        initial_service_ms: float = 1.0,
        *,
        enabled: bool = True,
        min_queue: int = MIN_QUEUE,
        rates: RateLimits | None = None,
        on_shed: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        loop_lag_ms: Callable[[], float] | None = None,
    ) -> None:
        self.default_budget_ms = default_budget_ms
        self.service_ms = initial_service_ms
        self.enabled = enabled
        self.min_queue = min_queue
        self.queued = 0  # payments admitted and not yet answered
        self._rates = rates or RateLimits({})
        self._on_shed = on_shed
        self._clock = clock
        self._loop_lag_ms = loop_lag_ms or (lambda: 0.0)
        self._mark = 0.0  # the last answer, or when the queue last stopped being empty
        self._busy_s = 0.0  # busy time of the window so far
        self._answered = 0  # answers in the window so far

    def admit(
        self,
        payments: int,
        received: float,
        budget_ms: float | None = None,
        api_key: str | None = None,
    ) -> None:
        """Take ``payments`` into the queue, or raise :class:`Overloaded` (nothing taken).

        ``received`` is the ``time.perf_counter()`` instant the request arrived; the
        caller calls :meth:`done` with the same count once it is answered (or failed).
        """
        now = self._clock()
        wait_s = self._rates.take(api_key, payments, now)
        if wait_s > 0.0:
            self._shed(RATE_LIMIT)
            raise RateLimited(
                f"API key over its rate of {self._rates.rate_of(api_key):g} payments/s; "
                "retry later",
                retry_after_s=wait_s,
            )
        if self.enabled:
            waited_ms = (now - received) * 1000.0 + self._loop_lag_ms()
            left_ms = (budget_ms or self.default_budget_ms) - waited_ms
            predicted_ms = (self.queued + payments) * self.service_ms
            # A process with (almost) nothing queued admits any request, even a batch larger
            # than its budget would fit: it could not be answered any sooner.
            if predicted_ms > left_ms and self.queued >= max(1, self.min_queue):
                self._rates.give_back(api_key, payments)
                self._shed(DEADLINE)
                raise Overloaded(
                    f"overloaded: the predicted wait of {predicted_ms:.0f} ms exceeds the "
                    f"request's budget ({left_ms:.0f} ms left); nothing was scored, retry "
                    "later or with a larger X-Deadline-Ms",
                    retry_after_s=(self.queued * self.service_ms) / 1000.0,
                )
        if self.queued == 0:
            self._mark = now  # idle time before this is no service time
        self.queued += payments

    def done(self, payments: int) -> None:
        """``payments`` admitted earlier are answered: the gap since the last answer counts
        towards the window's busy time (see the module)."""
        now = self._clock()
        if self.queued >= self.min_queue:
            self._busy_s += now - self._mark
            self._answered += payments
            if self._answered >= WINDOW:
                sample_ms = self._busy_s * 1000.0 / self._answered
                sample_ms = min(sample_ms, STALL_FACTOR * self.service_ms)
                self.service_ms += ALPHA * (sample_ms - self.service_ms)
                self._busy_s, self._answered = 0.0, 0
        self._mark = now
        self.queued -= payments

    def _shed(self, reason: str) -> None:
        if self._on_shed is not None:
            self._on_shed(reason)
