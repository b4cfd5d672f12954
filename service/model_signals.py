"""Signals an operator alerts on, exported as Prometheus gauges: each feature's drift
(PSI against the served model's training window, as on the period report) and the
precision and recall of declines against the labels received so far.

They are recomputed periodically over the latest days of decisions (the audit store's
latest event time is the window's end, so a replayed history is judged on its own clock),
in a thread: the same aggregation as ``riskscore report``, bounded by its feature sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from explain.audit.store import AuditStore
from explain.reports.query import DecisionFilter
from explain.reports.summary import PeriodSummary, summarize
from models.artifacts import load_manifest
from models.distributions import PSI_ALERT
from models.errors import ArtifactError

log = logging.getLogger(__name__)


class ModelSignals:
    """The gauges, and one refresh of them from the store."""

    def __init__(
        self,
        store: AuditStore,
        artifact_dir: Path | Callable[[], Path],
        registry: CollectorRegistry,
        window_days: int,
    ) -> None:
        self._store = store
        # A callable: the served model's artifact, which a promotion changes.
        self._artifact_dir = artifact_dir if callable(artifact_dir) else lambda: artifact_dir
        self._window = timedelta(days=window_days)
        self.psi = Gauge(
            "riskscore_feature_psi",
            "Population stability index of each feature over the signal window against the"
            f" served model's training window (above {PSI_ALERT}: drifted).",
            ["feature"],
            registry=registry,
        )
        self.drifted = Gauge(
            "riskscore_features_drifted",
            f"Features whose PSI over the signal window is above {PSI_ALERT}.",
            registry=registry,
        )
        self.decline_precision = Gauge(
            "riskscore_decline_precision",
            "Share of labelled declines in the signal window labelled fraud (NaN until a"
            " decline is labelled; labels arrive late, so recent days weigh little).",
            registry=registry,
        )
        self.decline_recall = Gauge(
            "riskscore_decline_recall",
            "Share of labelled frauds in the signal window that were declined (NaN until"
            " a fraud is labelled).",
            registry=registry,
        )
        self.labelled_declines = Gauge(
            "riskscore_signal_labelled_declines",
            "Labelled declines in the signal window (the precision's sample size).",
            registry=registry,
        )
        self.decisions = Gauge(
            "riskscore_signal_window_decisions",
            "Decisions in the signal window.",
            registry=registry,
        )
        self.updated = Gauge(
            "riskscore_signals_updated_timestamp_seconds",
            "When the signals were last recomputed (Unix time; 0: never).",
            registry=registry,
        )
        for gauge in (self.decline_precision, self.decline_recall):
            gauge.set(math.nan)

    def refresh(self) -> PeriodSummary | None:
        """Recompute every gauge (blocking: run it in a thread). None for an empty store."""
        latest = self._store.latest_event_ms()
        if latest is None:
            return None
        end = datetime.fromtimestamp(latest / 1000, UTC) + timedelta(milliseconds=1)
        selection = DecisionFilter.model_validate({"from": end - self._window, "to": end})
        try:
            reference = load_manifest(self._artifact_dir()).feature_distributions
        except ArtifactError:
            reference = None  # no drift without the training window's distributions
        summary = summarize(self._store, selection, reference)
        drift = summary.drift()
        for row in drift:
            self.psi.labels(row.feature).set(math.nan if row.psi is None else row.psi)
        self.drifted.set(sum(row.drifted for row in drift))
        quality = summary.decline_quality()
        self.decline_precision.set(_or_nan(quality.precision))
        self.decline_recall.set(_or_nan(quality.recall))
        self.labelled_declines.set(quality.labelled_declines)
        self.decisions.set(summary.total)
        self.updated.set(time.time())
        return summary


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


class SignalsLoop:
    """Refreshes the signals now and every ``interval_s``; stopping waits for a refresh
    under way (it reads the store from a thread, and the store closes after this stops)."""

    def __init__(self, signals: ModelSignals, interval_s: float) -> None:
        self._signals = signals
        self._interval_s = interval_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, after: asyncio.Future[Any] | None = None) -> None:
        """Begin; the first refresh waits for ``after`` (the warm start, which reads the
        same store and should not share the cores with it)."""
        self._task = asyncio.create_task(self._run(after))

    async def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)

    async def _run(self, after: asyncio.Future[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(after)
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self._signals.refresh)
            except Exception:
                # The gauges keep their last values; the next round tries again.
                log.exception("recomputing the drift and decline-precision gauges failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
