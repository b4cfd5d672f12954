"""The period report: volumes, trends, scores, reasons, importance, drift and label
quality. Every count and every top reason links to the list of the decisions behind it
(``decisions.html`` with the period's filters and one more), whose rows link to each
decision's own page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from explain.reports.charts import COLORS, bar_chart, histogram_chart, trend_chart
from explain.reports.names import plain_name
from explain.reports.page_parts import Link, figure, href, page, pairs, percent, table, text
from explain.reports.query import DecisionFilter
from explain.reports.summary import PeriodSummary
from explain.reports.trends import HOUR_MS, TrendPoint
from models.artifacts import Manifest
from models.distributions import PSI_ALERT

TOP_REASONS = 10
LIST_PAGE = "decisions.html"


def counter_top(counter: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n`` most frequent entries, ties broken by name (stable across runs)."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]


class _Links:
    """Links to the decision list: the period's filters, narrowed by one more."""

    def __init__(self, selection: DecisionFilter) -> None:
        self._base = selection.query_params()
        self._selection = selection

    def to(self, label: Any, **narrower: Any) -> Link:
        return Link(label, href(LIST_PAGE, {**self._base, **narrower}))

    def during(self, label: Any, point: TrendPoint, **narrower: Any) -> Link:
        # The bucket, within the period (a filter's bounds may cut a day short).
        start, end = point.start, point.end
        if self._selection.start is not None:
            start = max(start, self._selection.start)
        if self._selection.end is not None:
            end = min(end, self._selection.end)
        return self.to(label, **{"from": _iso(start), "to": _iso(end)}, **narrower)


def _iso(when: datetime) -> str:
    # UTC without an offset, as the filters read it (no '+' to escape in a URL).
    return when.replace(tzinfo=None).isoformat()


def _counts(counter: dict[str, int], total: int, links: _Links, field: str) -> str:
    return table(
        ["", "decisions", "share"],
        (
            (key, links.to(n, **{field: key}), percent(n / total if total else None))
            for key, n in sorted(counter.items())
        ),
    )


def _reasons(counter: dict[str, int], title: str, links: _Links, **narrower: Any) -> str:
    top = counter_top(counter, TOP_REASONS)
    chart = figure(
        bar_chart(
            [plain_name(code) for code, _ in top],
            [n for _, n in top],
            title,
            "decisions",
            COLORS["raises"],
        ),
        f"{title}: how often each reason was among a decision's top reasons.",
    )
    rows = (
        (
            links.to(plain_name(code), reason=code, **narrower),
            links.to(n, reason=code, **narrower),
            code,
        )
        for code, n in top
    )
    return chart + table(["reason", "decisions", "reason code"], rows)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} ms"


def _trends(summary: PeriodSummary, links: _Links) -> str:
    points = summary.trends.points()
    if not points:
        return "<p class='note'>No decisions in this period.</p>"
    hourly = summary.trends.bucket_ms() == HOUR_MS
    unit = "hour" if hourly else "day"
    starts = [p.start for p in points]
    chart = trend_chart(
        starts,
        [
            ("decisions", {"decisions": [p.counts["decisions"] for p in points]}),
            (
                "share of decisions",
                {
                    "decline rate": [p.rate("decline") for p in points],
                    "review rate": [p.rate("review") for p in points],
                    "fallback rate": [p.rate("fallback") for p in points],
                },
            ),
            (
                "labelled",
                {
                    "labelled fraud (count)": [p.counts["labelled_fraud"] for p in points],
                    "precision of declines": [p.precision for p in points],
                },
            ),
            (
                "latency (ms)",
                {"p50": [p.p50_ms for p in points], "p99": [p.p99_ms for p in points]},
            ),
        ],
        f"Per {unit}: decisions, rates, labels, decision latency",
    )
    stamp = "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"
    rows = [
        (
            p.start.strftime(stamp),
            links.during(p.counts["decisions"], p),
            links.during(p.counts["decline"], p, action="decline"),
            percent(p.rate("decline")),
            links.during(p.counts["review"], p, action="review"),
            percent(p.rate("review")),
            links.during(p.counts["fallback"], p, fallback="true"),
            percent(p.rate("fallback")),
            p.counts["labelled_fraud"],
            percent(p.precision),
            _ms(p.p50_ms),
            _ms(p.p99_ms),
        )
        for p in points
    ]
    return figure(
        chart,
        f"Per {unit}, UTC. Labelled fraud and precision count only decisions whose label "
        "has arrived; latency is from receipt to decision.",
    ) + table(
        [
            unit,
            "decisions",
            "declines",
            "decline rate",
            "reviews",
            "review rate",
            "fallbacks",
            "fallback rate",
            "labelled fraud",
            "precision of declines",
            "p50 latency",
            "p99 latency",
        ],
        rows,
    )


def summary_page(
    summary: PeriodSummary, selection: DecisionFilter, manifest: Manifest | None
) -> str:
    """The report of a period: volumes, trends, scores, reasons, importance, drift, labels."""
    total = summary.total
    links = _Links(selection)
    quality = summary.decline_quality()
    importance = summary.mean_abs_shap()
    body = [
        pairs(
            [
                ("period", selection.period()),
                ("decisions", links.to(total)),
                ("first event", summary.first.isoformat() if summary.first else "none"),
                ("last event", summary.last.isoformat() if summary.last else "none"),
                ("model versions", ", ".join(sorted(summary.model_versions)) or "none"),
                ("fallbacks", links.to(summary.fallbacks, fallback="true")),
                ("fallback rate", percent(summary.fallback_rate)),
            ]
        ),
        "<h2>Over time</h2>",
        _trends(summary, links),
        "<h2>Decisions by action</h2>",
        _counts(dict(summary.by_action), total, links, "action"),
        "<h2>Decisions by stage</h2>",
        _counts(dict(summary.by_stage), total, links, "stage"),
    ]
    if summary.by_fallback_reason:
        body += [
            "<h3>Fallbacks by reason</h3>",
            table(
                ["reason", "decisions"],
                sorted(summary.by_fallback_reason.items()),
            ),
        ]
    markers = {}
    if manifest is not None:
        markers = {"review": manifest.thresholds.review, "decline": manifest.thresholds.decline}
    body += [
        "<h2>Score distribution</h2>",
        figure(
            histogram_chart(
                summary.score_edges(), summary.score_counts.tolist(), "Scores", markers
            ),
            "Decisions per score bin (symmetric log scale); dashed: the served thresholds.",
        ),
        "<h2>Top reasons</h2>",
        _reasons(dict(summary.reasons), "All decisions", links),
        _reasons(dict(summary.decline_reasons), "Declines", links, action="decline"),
        "<h2>Global feature importance</h2>",
        figure(
            bar_chart(
                [plain_name(k) for k, _ in importance],
                [v for _, v in importance],
                "Mean |SHAP| per feature",
                "mean |contribution| (log-odds)",
                COLORS["total"],
            ),
            "Average size of each feature's contribution over the period" + _sampled(summary),
        ),
        "<h2>Feature drift against the training window</h2>",
        _drift(summary, manifest),
        "<h2>Declines against labels</h2>",
        pairs(
            [
                ("labelled decisions", quality.labelled),
                ("labelled fraud", quality.labelled_fraud),
                ("labelled declines", quality.labelled_declines),
                ("declines labelled fraud", quality.true_declines),
                ("precision of declines", percent(quality.precision)),
                ("recall of declines", percent(quality.recall)),
            ]
        ),
        "<p class='note'>Only decisions whose label has arrived count here; the latest "
        "label of a transaction stands.</p>",
    ]
    return page(f"Period report — {selection.period()}", "".join(body))


def _sampled(summary: PeriodSummary) -> str:
    if summary.feature_decisions >= summary.total:
        return "."
    return (
        f", from a systematic sample of {summary.feature_decisions:,} of its "
        f"{summary.total:,} decisions (drift below too)."
    )


def _drift(summary: PeriodSummary, manifest: Manifest | None) -> str:
    if manifest is None or not manifest.feature_distributions:
        return (
            "<p class='note'>The served model's manifest holds no training-window feature "
            "distributions, so drift cannot be measured.</p>"
        )
    window = manifest.training_window
    rows = [
        (
            plain_name(d.feature),
            "n/a" if d.psi is None else round(d.psi, 4),
            "DRIFTED" if d.drifted else "",
            d.feature,
        )
        for d in summary.drift()
    ]
    return (
        f"<p class='note'>Population stability index of each feature, this period against "
        f"{text(window.start)} .. {text(window.end)} ({text(manifest.model_version)}); "
        f"above {PSI_ALERT} is flagged.</p>" + table(["feature", "PSI", "flag", "code"], rows)
    )
