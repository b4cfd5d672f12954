"""A period's decisions over time: per hour while aggregating, per day when the period is
longer than two days. Memory grows with the number of hours covered, never with the
number of decisions.

Latency percentiles come from a histogram of log-spaced bins (40 per decade from 0.01 ms,
each about 6% wide: ``explain.audit.columns``); a percentile is reported as the upper edge
of its bin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from explain.audit.columns import (
    HOUR_MS,
    LATENCY_BINS,
    LATENCY_BINS_PER_DECADE,
    LATENCY_LOWEST_MS,
    DecisionColumns,
    PeriodAggregates,
    latency_bins,
)

DAY_MS = 24 * HOUR_MS
# Periods up to this long are shown per hour.
HOURLY_UP_TO_MS = 2 * DAY_MS


# Counters kept per bucket, in this order.
COUNTERS = (
    "decisions",
    "approve",
    "review",
    "decline",
    "fallback",
    "labelled",
    "labelled_fraud",
    "labelled_declines",
    "true_declines",
)
_AT = {name: i for i, name in enumerate(COUNTERS)}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(epoch_ms: int) -> datetime:
    """An event time in milliseconds as a UTC datetime."""
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def _upper_edge(index: int) -> float:
    return float(LATENCY_LOWEST_MS * 10 ** ((index + 1) / LATENCY_BINS_PER_DECADE))


def _percentile(histogram: np.ndarray, share: float) -> float | None:
    total = int(histogram.sum())
    if not total:
        return None
    cumulative = np.cumsum(histogram)
    return _upper_edge(int(np.searchsorted(cumulative, share * total, side="left")))


@dataclass(frozen=True)
class TrendPoint:
    """One hour or one day of the period."""

    start: datetime
    end: datetime
    counts: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None

    def rate(self, name: str) -> float | None:
        total = self.counts["decisions"]
        return self.counts[name] / total if total else None

    @property
    def precision(self) -> float | None:
        """Share of labelled declines that were labelled fraud."""
        declines = self.counts["labelled_declines"]
        return self.counts["true_declines"] / declines if declines else None


@dataclass
class Trends:
    """Per-hour counters and latency histograms, filled chunk by chunk."""

    _counts: dict[int, np.ndarray] = field(default_factory=dict)
    _latency: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, chunk: DecisionColumns) -> None:
        hours, inverse = np.unique(chunk.event_time_ms // HOUR_MS, return_inverse=True)
        n = len(hours)
        action = np.asarray(chunk.action)
        labelled = chunk.is_fraud >= 0
        fraud = chunk.is_fraud == 1
        declined = action == "decline"
        masks = {
            "decisions": np.ones(len(chunk), bool),
            "approve": action == "approve",
            "review": action == "review",
            "decline": declined,
            "fallback": chunk.fallback,
            "labelled": labelled,
            "labelled_fraud": fraud,
            "labelled_declines": labelled & declined,
            "true_declines": fraud & declined,
        }
        counts = np.zeros((n, len(COUNTERS)), np.int64)
        for name, mask in masks.items():
            counts[:, _AT[name]] = np.bincount(inverse, weights=mask, minlength=n)
        bins = latency_bins(chunk.latency_ms)
        latency = np.bincount(inverse * LATENCY_BINS + bins, minlength=n * LATENCY_BINS)
        latency = latency.reshape(n, LATENCY_BINS)
        for row, hour in enumerate(hours.tolist()):
            self._hour(hour)[0][:] += counts[row]
            self._latency[hour] += latency[row]

    def _hour(self, hour: int) -> tuple[np.ndarray, np.ndarray]:
        if hour not in self._counts:
            self._counts[hour] = np.zeros(len(COUNTERS), np.int64)
            self._latency[hour] = np.zeros(LATENCY_BINS, np.int64)
        return self._counts[hour], self._latency[hour]

    def add_aggregates(self, aggregates: PeriodAggregates) -> None:
        """A store's counts (see :class:`PeriodAggregates`)."""
        for hour, action, _stage, fallback, _reason, _version, n in aggregates.groups:
            counts, _ = self._hour(hour)
            counts[_AT["decisions"]] += n
            counts[_AT[action]] += n
            counts[_AT["fallback"]] += n * fallback
        for hour, action, is_fraud, n in aggregates.labels:
            counts, _ = self._hour(hour)
            counts[_AT["labelled"]] += n
            counts[_AT["labelled_fraud"]] += n * is_fraud
            if action == "decline":
                counts[_AT["labelled_declines"]] += n
                counts[_AT["true_declines"]] += n * is_fraud
        for hour, latency_bin, n in aggregates.latency:
            self._hour(hour)[1][latency_bin] += n

    def bucket_ms(self) -> int:
        if not self._counts:
            return DAY_MS
        span = (max(self._counts) - min(self._counts) + 1) * HOUR_MS
        return HOUR_MS if span <= HOURLY_UP_TO_MS else DAY_MS

    def points(self) -> list[TrendPoint]:
        """Every hour (short periods) or day from the first decision to the last, empty
        ones included so that a gap shows as a gap."""
        if not self._counts:
            return []
        size = self.bucket_ms()
        per = size // HOUR_MS
        first, last = min(self._counts) // per, max(self._counts) // per
        counts = {b: np.zeros(len(COUNTERS), np.int64) for b in range(first, last + 1)}
        latency = {b: np.zeros(LATENCY_BINS, np.int64) for b in range(first, last + 1)}
        for hour, row in self._counts.items():
            counts[hour // per] += row
            latency[hour // per] += self._latency[hour]
        return [
            TrendPoint(
                start=instant(b * size),
                end=instant((b + 1) * size),
                counts=dict(zip(COUNTERS, counts[b].tolist(), strict=True)),
                p50_ms=_percentile(latency[b], 0.50),
                p99_ms=_percentile(latency[b], 0.99),
            )
            for b in range(first, last + 1)
        ]
