"""Collects every outcome of a run: latency from the *intended* send time, errors by kind.

Latency starts at the time the schedule meant a request to leave, not when it actually
left, so a stalled server (or a late client) shows as latency instead of quietly lowering
the rate ("coordinated omission"). Requests meant to leave during the warm-up are sent but
not recorded. One HDR histogram holds the run's latency; the raw samples are kept too (two
floats each) for the per-second series and the plot.
"""

from __future__ import annotations

from array import array
from collections import Counter

from hdrh.histogram import HdrHistogram

# HDR range in microseconds: 1 µs .. 10 min at 3 significant digits.
LOWEST_US = 1
HIGHEST_US = 600_000_000
SIGNIFICANT_DIGITS = 3

DROPPED = "dropped"  # not sent: too many requests outstanding
TIMEOUT = "timeout"  # sent, no answer before the end of the run


class Recorder:
    """Counts sends and outcomes; ``measure_from`` is the intended time where results
    start (the schedule sets it when the run starts)."""

    def __init__(self, measure_from: float = 0.0) -> None:
        self.measure_from = measure_from
        self.histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.completed = 0
        self.outstanding = 0
        self.max_send_lag_s = 0.0
        # Per measured request: intended time offset (s from measure_from) and outcome.
        self.sample_offsets = array("d")
        self.sample_latency_ms = array("d")  # NaN for an error
        self.error_offsets = array("d")

    def on_send(self, intended: float, now: float) -> None:
        self.outstanding += 1
        if intended >= self.measure_from:
            self.sent += 1
            self.max_send_lag_s = max(self.max_send_lag_s, now - intended)

    def on_done(self, intended: float, error: str | None, now: float) -> None:
        """One answer: ``error`` names what went wrong (an HTTP status, an exception type)."""
        self.outstanding -= 1
        self._record(intended, error, now)

    def on_dropped(self, intended: float) -> None:
        """Not sent because the outstanding limit was reached: an error, not a silence."""
        if intended >= self.measure_from:
            self.sent += 1
            self._record(intended, DROPPED, intended)

    def on_abandoned(self, intended: float, now: float) -> None:
        """Still unanswered when the run ended."""
        self.on_done(intended, TIMEOUT, now)

    def _record(self, intended: float, error: str | None, now: float) -> None:
        if intended < self.measure_from:
            return
        offset = intended - self.measure_from
        if error is None:
            self.completed += 1
            latency_us = max(LOWEST_US, round((now - intended) * 1e6))
            self.histogram.record_value(min(latency_us, HIGHEST_US))
            self.sample_offsets.append(offset)
            self.sample_latency_ms.append(latency_us / 1000.0)
        else:
            self.errors[error] += 1
            self.error_offsets.append(offset)
