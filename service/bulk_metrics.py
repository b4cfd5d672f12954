"""Prometheus counters and histograms for the hot path, folded in bulk.

``prometheus_client``'s own histogram takes a lock and walks its buckets in Python on every
observation: with four stage timings per decision and two figures per request, that was
about a twentieth of the scoring process's time under load (measured). These keep each
observation as one list append and fold them into bucket counts with numpy when there
are enough, or when scraped. Observations come from the event loop only, as does the
scrape (``/metrics`` is a handler), so there is nothing to lock. What a scrape shows is the
same Prometheus exposition as before: ``<name>_total`` for counters; ``_bucket``, ``_count``,
``_sum`` for histograms.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Observations held per label set before they are folded into counts.
FOLD_EVERY = 4096


class BulkCounter(Collector):
    """A labelled counter (only increments)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, value in sorted(self._values.items()):
            family.add_metric(list(labels), value)
        yield family


class BulkHistogram(Collector):
    """A labelled histogram; ``buckets`` are the finite upper bounds, ascending."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._pending: dict[tuple[str, ...], list[float]] = {}
        self._counts: dict[tuple[str, ...], np.ndarray] = {}  # per bucket, +Inf last
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        pending = self._pending.get(labels)
        if pending is None:
            pending = self._pending[labels] = []
        pending.append(value)
        if len(pending) >= FOLD_EVERY:
            self._fold(labels, pending)

    def _fold(self, labels: tuple[str, ...], pending: list[float]) -> None:
        values = np.asarray(pending, dtype=np.float64)
        pending.clear()
        # A value v lands in the first bucket whose bound is >= v (Prometheus's "le").
        where = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(where, minlength=len(self._bounds) + 1)
        known = self._counts.get(labels)
        self._counts[labels] = counts if known is None else known + counts
        self._sums[labels] = self._sums.get(labels, 0.0) + float(values.sum())

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        for labels, pending in self._pending.items():
            if pending:
                self._fold(labels, pending)
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        edges = [_le(b) for b in self._bounds.tolist()] + ["+Inf"]
        for labels, counts in sorted(self._counts.items()):
            cumulative = np.cumsum(counts).tolist()
            family.add_metric(
                list(labels),
                buckets=list(zip(edges, cumulative, strict=True)),
                sum_value=self._sums[labels],
            )
        yield family


def _le(bound: float) -> str:
    # As prometheus_client writes bucket bounds (floatToGoString for finite values).
    return repr(float(bound))
