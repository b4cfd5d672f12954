"""What the server decided during a run: escalated and fallen-back shares from its /metrics.

A capacity bought by falling back more is not a capacity: when the fast score decides
because the second stage had no budget left, the server does less work per payment. So a
run against ``riskscore serve`` can read the service's Prometheus counters before and after
(``--server-metrics URL``) and report, for the payments decided in between (warm-up
included), the share the second stage decided and the share that fell back.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_TIMEOUT_S = 10.0


class ServerMetricsError(RuntimeError):
    """The server's metrics endpoint could not be read."""


@dataclass(frozen=True)
class DecisionCounts:
    """Cumulative decision counters of one scrape."""

    decisions: float = 0.0
    second_stage: float = 0.0
    fallbacks: float = 0.0
    fallback_reasons: dict[str, float] = field(default_factory=dict)
    # Cumulative histogram counts: (all, within the bound) of /score requests from receipt
    # to response, and of durable audit writes. They place a late answer: in the service's
    # handler, in its write, or outside both (sockets, the client).
    score_requests: tuple[float, float] = (0.0, 0.0)
    store_writes: tuple[float, float] = (0.0, 0.0)


# The bounds of the server-side tails counted (histogram bucket edges of the service).
SCORE_BOUND = "0.05"
STORE_BOUND = "0.01"


def parse(text: str) -> DecisionCounts:
    """Sum riskscore's decision counters out of a Prometheus text exposition."""
    decisions = second_stage = fallbacks = 0.0
    reasons: dict[str, float] = {}
    score = [0.0, 0.0]
    store = [0.0, 0.0]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "riskscore_http_request_duration_seconds_bucket":
                if labels.get("route") == "/score" and labels.get("le") in ("+Inf", SCORE_BOUND):
                    score[labels["le"] == SCORE_BOUND] += sample.value
            elif sample.name == "riskscore_stage_duration_seconds_bucket":
                if labels.get("stage") == "store" and labels.get("le") in ("+Inf", STORE_BOUND):
                    store[labels["le"] == STORE_BOUND] += sample.value
            elif sample.name == "riskscore_decisions_total":
                decisions += sample.value
                if sample.labels.get("stage") == "sequence":
                    second_stage += sample.value
            elif sample.name == "riskscore_fallbacks_total":
                fallbacks += sample.value
                reason = sample.labels.get("reason", "unknown")
                reasons[reason] = reasons.get(reason, 0.0) + sample.value
    return DecisionCounts(
        decisions, second_stage, fallbacks, reasons, (score[0], score[1]), (store[0], store[1])
    )


def scrape(url: str) -> DecisionCounts:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return parse(response.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ServerMetricsError(f"cannot read server metrics at {url}: {exc}") from exc


def shares(before: DecisionCounts, after: DecisionCounts) -> dict[str, Any]:
    """Decisions between two scrapes; escalated = decided by the second stage or fell back."""
    decisions = after.decisions - before.decisions
    second_stage = after.second_stage - before.second_stage
    fallbacks = after.fallbacks - before.fallbacks
    if decisions <= 0:
        return {"decisions": 0, "escalated_share": None, "fallback_share": None}
    return {
        "decisions": int(decisions),
        "escalated_share": round((second_stage + fallbacks) / decisions, 4),
        "fallback_share": round(fallbacks / decisions, 4),
    }


def server_tails(before: DecisionCounts, after: DecisionCounts) -> dict[str, int]:
    """Between two scrapes: /score requests over 50 ms from receipt to response, and
    durable writes over 10 ms, as the service measured them."""

    def over(a: tuple[float, float], b: tuple[float, float]) -> int:
        return int((b[0] - a[0]) - (b[1] - a[1]))

    return {
        "score_requests": int(after.score_requests[0] - before.score_requests[0]),
        "score_over_50ms": over(before.score_requests, after.score_requests),
        "store_writes": int(after.store_writes[0] - before.store_writes[0]),
        "store_over_10ms": over(before.store_writes, after.store_writes),
    }


def fallback_reasons(before: DecisionCounts, after: DecisionCounts) -> dict[str, int]:
    """Fallbacks between two scrapes by reason, the reasons that occurred only."""
    counts = {
        reason: int(total - before.fallback_reasons.get(reason, 0.0))
        for reason, total in sorted(after.fallback_reasons.items())
    }
    return {reason: n for reason, n in counts.items() if n}


def describe(server: dict[str, Any]) -> str:
    """'12.3 % escalated, 0.4 % fell back (of 9,000 decisions)' for reports and sweep lines."""
    if server["escalated_share"] is None:
        return "no decisions counted"
    return (
        f"{100 * server['escalated_share']:.1f} % escalated, "
        f"{100 * server['fallback_share']:.1f} % fell back (of {server['decisions']:,} decisions)"
    )
