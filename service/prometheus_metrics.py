"""Prometheus metrics, all named ``riskscore_*``, in a registry of their own per app.

A registry per app (not the global one) lets tests build many apps in one process and
keeps third-party collectors out of the scrape unless asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from explain.decision import Decision
from service.bulk_metrics import BulkCounter, BulkHistogram
from streaming.processor import StreamStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Milliseconds matter here: the whole budget is ~50 ms and single stages take well under 1.
_STAGE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScoringMetrics:
    """What the scorer and the transports report.

    The hot ones (per request, per decision) are bulk collectors (``bulk_metrics.py``):
    observed on the event loop only, as is the scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = BulkCounter(
            "riskscore_http_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
        )
        self.request_seconds = BulkHistogram(
            "riskscore_http_request_duration_seconds",
            "HTTP request latency by route, receipt to response.",
            ["route"],
            _REQUEST_BUCKETS,
        )
        self.stage_seconds = BulkHistogram(
            "riskscore_stage_duration_seconds",
            "Time per scoring stage: features, model, explain, store (durable audit write).",
            ["stage"],
            _STAGE_BUCKETS,
        )
        self.decisions = BulkCounter(
            "riskscore_decisions",
            "Decisions made, by action and by the stage that decided.",
            ["action", "stage"],
        )
        self.fallbacks = BulkCounter(
            "riskscore_fallbacks",
            "Decisions where the sequence stage was wanted but the fast score decided, by reason.",
            ["reason"],
        )
        for reason in ("budget", "timeout", "error"):
            self.fallbacks.inc((reason,), 0.0)  # exported as 0 from the start, for alerts
        for collector in (
            self.requests,
            self.request_seconds,
            self.stage_seconds,
            self.decisions,
            self.fallbacks,
        ):
            r.register(collector)
        self.labels = Counter(
            "riskscore_labels",
            "Labels received, by outcome (applied, unchanged, recorded).",
            ["outcome"],
            registry=r,
        )
        self.shed = Counter(
            "riskscore_shed",
            "Requests refused with 429 before any scoring, by reason (deadline: the predicted "
            "wait exceeded the budget; rate_limit: the API key was over its rate).",
            ["reason"],
            registry=r,
        )
        for reason in ("deadline", "rate_limit"):
            self.shed.labels(reason)  # exported as 0 from the start, for alerts
        self.ready = Gauge(
            "riskscore_ready", "1 when the service is ready to score, else 0.", registry=r
        )
        # With `serve --workers N` every worker has its own counters and a scrape reaches
        # one of them: the process id says which (and a restart shows as a new one).
        Gauge(
            "riskscore_process_id", "Operating-system id of the process that answered.", registry=r
        ).set(os.getpid())

    def observe_decision(self, decision: Decision, store_seconds: float) -> None:
        """Count a newly recorded decision and its stage timings (replays are not counted)."""
        stages = self.stage_seconds
        for stage, ms in decision.timings_ms.items():
            stages.observe((stage,), ms / 1000.0)
        stages.observe(("store",), store_seconds)
        self.decisions.inc((decision.action, decision.stage))
        if decision.fallback:
            self.fallbacks.inc((decision.fallback_reason or "unknown",))

    def observe_label(self, outcome: str) -> None:
        self.labels.labels(outcome).inc()

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc((route, str(status)))
        self.request_seconds.observe((route,), seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StreamCollector(Collector):
    """The Kafka consumer's running totals, read at scrape time."""

    def __init__(self, stats: Callable[[], StreamStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        for name, help_text, value in (
            ("riskscore_kafka_records", "Records consumed and processed.", stats.records),
            ("riskscore_kafka_decisions", "Decisions published.", stats.decisions),
            ("riskscore_kafka_labels", "Labels applied from the labels topic.", stats.labels),
            (
                "riskscore_kafka_dead_letters",
                "Records sent to the dead-letter topic.",
                stats.dead_letters,
            ),
            ("riskscore_kafka_batch_retries", "Batches retried after a failure.", stats.retries),
            ("riskscore_kafka_batches", "Batches processed and committed.", stats.batches),
            (
                "riskscore_kafka_reconnects",
                "Consumer sessions restarted after a transient broker fault.",
                stats.reconnects,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        since = stats.retrying_since
        yield GaugeMetricFamily(
            "riskscore_kafka_retrying_seconds",
            "How long the consumer has been retrying after a broker or store fault (0: not).",
            value=0.0 if since is None else time.monotonic() - since,
        )
        yield GaugeMetricFamily(
            "riskscore_kafka_last_batch_size", "Records in the last batch.", value=stats.last_batch
        )
        yield GaugeMetricFamily(
            "riskscore_kafka_commit_seconds",
            "Duration of the last offset commit.",
            value=stats.last_commit_s,
        )
        lag = GaugeMetricFamily(
            "riskscore_kafka_lag", "Records behind the end of each partition.", labels=["partition"]
        )
        for partition, behind in sorted(stats.lag.items()):
            lag.add_metric([partition], behind)
        yield lag
