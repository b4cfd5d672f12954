"""The report of one decision: what was asked, what was decided, and why (built from
:mod:`explain.reports.page_parts`, which escapes every value)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from explain.records import DecisionRecord, LabelRecord, SequenceExplanation
from explain.reports.charts import COLORS, bar_chart
from explain.reports.names import plain_name
from explain.reports.page_parts import figure, page, pairs, table, text
from explain.reports.waterfall import waterfall_svg
from models.artifacts import Manifest

# -- per decision -------------------------------------------------------------------------


def _model_section(record: DecisionRecord, manifest: Manifest | None) -> str:
    rows: list[tuple[str, Any]] = [("model version", record.model_version)]
    if record.rules_version is not None:
        # Lists and rules that overrode the model are among the reasons (LIST_, RULE_).
        rows.append(("rule set in force", record.rules_version))
    if manifest is not None and manifest.model_version == record.model_version:
        rows += [(f"SHA-256 of {name}", sha) for name, sha in sorted(manifest.files.items())]
        window = manifest.training_window
        rows.append(("training window", f"{window.start} .. {window.end}"))
        note = ""
    else:
        served = "no artifact" if manifest is None else manifest.model_version
        # The version ends with the model file's SHA-256 prefix; the full digest is only
        # known from that artifact's manifest.
        note = (
            f"<p class='note'>This decision's model is not the artifact served now "
            f"({text(served)}); its full checksum is in that artifact's manifest.</p>"
        )
    return "<h2>Model</h2>" + pairs(rows) + note


def _sequence_section(sequence: SequenceExplanation) -> str:
    attributions = sequence.attributions
    effects = [a["contribution"] for a in attributions]
    if all(e is not None for e in effects):
        chart = figure(
            bar_chart(
                [f"{a['timestamp']} {a['amount'] or 0.0:.2f}" for a in attributions],
                [e or 0.0 for e in effects],
                "Second stage: effect of each transaction of the sequence (occlusion)",
                "change of the sequence model's logit",
                COLORS["total"],
            ),
            "Newest (this payment) on top; contributions are not additive.",
        )
    else:
        chart = (
            "<p class='note'>The effect of each earlier payment is computed when the decision "
            f"is read, with sequence model {text(sequence.model_version)}; it is not the one "
            "loaded (or an earlier payment's record is missing), so they are not shown.</p>"
        )
    return (
        "<h2>Second stage (sequence model)</h2>"
        + pairs(
            [
                ("method", sequence.method),
                ("sequence model version", sequence.model_version),
                ("fast score", sequence.fast_score),
                ("sequence score", sequence.sequence_score),
                ("combination", sequence.combination),
            ]
        )
        + chart
        + table(
            ["transaction", "timestamp", "amount", "contribution"],
            (
                (a["transaction_id"], a["timestamp"], a["amount"], a["contribution"])
                for a in attributions
            ),
        )
    )


def decision_page(
    record: DecisionRecord, labels: Sequence[LabelRecord], manifest: Manifest | None
) -> str:
    """The report of one decision: what was asked, what was decided, and why."""
    tx = record.transaction
    action = f"<span class='{record.action}'>{text(record.action.upper())}</span>"
    fallback = "no"
    if record.fallback:
        fallback = f"yes ({record.fallback_reason or 'reason not recorded'})"
    decision = pairs(
        [
            ("score (fraud probability)", record.score),
            ("stage that decided", record.stage),
            ("fell back to the fast path", fallback),
            ("review threshold", record.thresholds.review),
            ("decline threshold", record.thresholds.decline),
            ("decided at", record.decided_at.isoformat()),
        ]
    )
    body = [
        "<h2>Transaction</h2>",
        pairs(
            [
                ("transaction id", tx.transaction_id),
                ("timestamp", tx.timestamp.isoformat()),
                ("customer id", tx.customer_id),
                ("terminal id", tx.terminal_id),
                ("amount", f"{tx.amount:,.2f} {tx.currency or ''}".strip()),
                ("request SHA-256", record.request_sha256),
            ]
        ),
        f"<h2>Decision: {action}</h2>",
        decision,
        "<h2>Why</h2>",
        figure(
            waterfall_svg(record.explanation),
            f"Exact TreeSHAP ({record.explanation.method}): red raises the risk, blue lowers "
            "it; the steps add up to the score.",
        ),
        table(
            ["reason", "contribution (log-odds)", "reason code"],
            ((r.text, r.contribution, r.code) for r in record.reasons),
        ),
    ]
    if record.sequence is not None:
        body.append(_sequence_section(record.sequence))
    body += [
        "<details><summary>Every feature and its SHAP value</summary>",
        table(
            ["feature", "value", "contribution", "code"],
            (
                (plain_name(a["feature"]), a["value"], a["contribution"], a["feature"])
                for a in record.explanation.attributions
            ),
        ),
        f"<p class='note'>base value {record.explanation.base_value:.6g} + contributions = "
        f"raw score {record.explanation.raw_score:.6g} (log-odds)</p></details>",
        _model_section(record, manifest),
        "<h2>Timings</h2>",
        table(
            ["stage", "milliseconds"],
            [*record.timings_ms.items(), ("total (receipt to decision)", record.latency_ms)],
        ),
        "<h2>Labels</h2>",
        table(
            ["fraud", "labelled at", "received at"],
            ((lb.is_fraud, lb.labelled_at, lb.received_at) for lb in labels),
        )
        if labels
        else "<p class='note'>No label has arrived for this transaction.</p>",
    ]
    return page(f"Decision report — transaction {tx.transaction_id}", "".join(body))
