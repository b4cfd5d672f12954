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


def parse(text: str) -> DecisionCounts:
    """Sum riskscore's decision counters out of a Prometheus text exposition."""
    decisions = second_stage = fallbacks = 0.0
    reasons: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "riskscore_decisions_total":
                decisions += sample.value
                if sample.labels.get("stage") == "sequence":
                    second_stage += sample.value
            elif sample.name == "riskscore_fallbacks_total":
                fallbacks += sample.value
                reason = sample.labels.get("reason", "unknown")
                reasons[reason] = reasons.get(reason, 0.0) + sample.value
    return DecisionCounts(decisions, second_stage, fallbacks, reasons)


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
