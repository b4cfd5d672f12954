"""The challenger report: the champion against the shadow challenger over a period, on the
same payments. The largest disagreements show both explanations: waterfalls for the
largest (drawing one took 0.48 s, the mean of five ``waterfall_svg`` calls of a
20-feature explanation on a 2-core machine shared with other processes: ten rows of two
would add ten seconds), each side's top reasons for all, and a link to the decision's
own report."""

from __future__ import annotations

from collections.abc import Mapping

from explain.records import Explanation
from explain.reports.challenger_compare import ACTIONS, Comparison, Disagreement, SideMetrics
from explain.reports.list_page import decision_href
from explain.reports.page_parts import Link, anchor, figure, href, page, pairs, percent, table, text
from explain.reports.query import ChallengerPeriod
from explain.reports.waterfall import waterfall_steps, waterfall_svg

TOP_REASONS = 5
WATERFALLS = 1  # disagreements drawn as waterfalls, largest first


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({percent(part / whole if whole else None)})"


def _label(label: bool | None) -> str:
    return "not labelled" if label is None else ("fraud" if label else "legitimate")


def _ap(side: SideMetrics) -> str:
    return "n/a" if side.ap is None else f"{side.ap:.4f}"


def _overview(result: Comparison, period: ChallengerPeriod, versions: Mapping[str, int]) -> str:
    others = [
        Link(
            f"{version} ({n:,})",
            href("challenger.html", {**period.query_params(), "version": version}),
        )
        for version, n in sorted(versions.items())
        if version != result.version
    ]
    delay = f"{result.label_delay_days:g}-day"
    rows = [
        ("period", period.period()),
        ("challenger version", result.version or "none"),
        ("champion versions", ", ".join(result.champion_versions) or "none"),
        ("decisions in the period", result.decisions),
        ("shadowed (scored by the challenger too)", _share(result.shadowed, result.decisions)),
        (
            "decisions from its first to its last scored",
            "n/a" if result.in_span is None else _share(result.shadowed, result.in_span),
        ),
        ("labelled, of the shadowed", _share(result.labelled, result.shadowed)),
        (f"unlabelled past the {delay} label delay (legitimate)", result.taken_legitimate),
        (f"unlabelled within the {delay} label delay (left out)", result.within_delay),
        ("declined by the champion, no label (left out)", result.declined_unlabelled),
        ("measured against labels", _share(result.measured, result.shadowed)),
        ("measured fraud", result.measured_fraud),
        ("served by a list or rule, not the model", result.overridden),
    ]
    body = pairs(rows)
    body += (
        "<p class='note'>Shadowed: of every decision in the period; the row below counts "
        "against the decisions from the challenger's first to its last scored one, so the "
        "time before it was set or after it was switched off is not taken for dropped rows "
        "(the shadow's drop counters are on <code>GET /models</code>). Counted in one "
        "statement.</p>"
    )
    if others:
        body += (
            "<p class='note'>Other challenger versions in this period: "
            + ", ".join(anchor(link) for link in others)
            + ".</p>"
        )
    if result.shadowed == 0:
        body += (
            "<p class='note'>No decision of this period was scored by this challenger: "
            "there is nothing to compare. Set a challenger and score payments, or choose "
            "another period.</p>"
        )
    return body


def _metrics(result: Comparison) -> str:
    ours, theirs = result.champion, result.challenger
    rows = [
        ("average precision (measured)", _ap(ours), _ap(theirs)),
        (
            "precision of declines (measured)",
            percent(ours.quality.precision),
            percent(theirs.quality.precision),
        ),
        (
            "recall of declines (measured)",
            percent(ours.quality.recall),
            percent(theirs.quality.recall),
        ),
        ("measured declines", ours.quality.labelled_declines, theirs.quality.labelled_declines),
        ("declines labelled fraud", ours.quality.true_declines, theirs.quality.true_declines),
        (
            "decline rate (every shadowed decision)",
            percent(ours.decline_rate),
            percent(theirs.decline_rate),
        ),
        ("declines (every shadowed decision)", ours.declines, theirs.declines),
    ]
    note = (
        "<p class='note'>Like with like: the challenger runs no list or rule, so the "
        "champion's action here is its model's (its recorded thresholds on its recorded "
        "score), not the action served after lists and rules (they differed on the "
        f"{result.overridden:,} decisions counted above). Decline rates are over every "
        "shadowed decision, labelled or not. Average precision, precision and recall are "
        "over the measured decisions, by the label policy of <code>riskscore train "
        "--from-store</code>: the latest label stands; an unlabelled payment counts as "
        f"legitimate once the {result.label_delay_days:g}-day label delay has passed, "
        "unless the champion declined it (it never completed, so no chargeback comes); "
        "unlabelled payments within the delay are left out.</p>"
    )
    if result.ap_note is not None:
        note += f"<p class='note'>Average precision is not given: {text(result.ap_note)}.</p>"
    return table(["measure", "champion", "challenger"], rows) + note


def _agreement(result: Comparison) -> str:
    rows = [
        (
            f"champion {ours}",
            *(result.agreement[(ours, theirs)] for theirs in ACTIONS),
            sum(result.agreement[(ours, theirs)] for theirs in ACTIONS),
        )
        for ours in ACTIONS
    ]
    rows.append(
        (
            "total",
            *(sum(result.agreement[(ours, theirs)] for ours in ACTIONS) for theirs in ACTIONS),
            result.shadowed,
        )
    )
    headers = ["", *(f"challenger {theirs}" for theirs in ACTIONS), "total"]
    return table(headers, rows) + (
        f"<p class='note'>Same action on {_share(result.agreeing, result.shadowed)} of the "
        "shadowed decisions.</p>"
    )


def _reasons(explanation: Explanation) -> str:
    steps = waterfall_steps(explanation, TOP_REASONS)[:TOP_REASONS]
    return table(["reason", "contribution (log-odds)"], steps)


def _explained(number: int, item: Disagreement, version: str | None) -> str:
    shown = item.shadowed
    tid = shown.transaction_id
    head = (
        f"<h3>{number}. <a href='{text(decision_href(tid))}'>{text(tid)}</a>: "
        f"champion {shown.champion_score:.4f} (model {text(shown.champion_model_action)}, "
        f"served {text(shown.champion_action)}), challenger "
        f"{shown.challenger_score:.4f} ({text(shown.challenger_action)}), "
        f"{text(_label(shown.label))}</h3>"
    )
    body = ""
    if item.record is not None and item.record.reasons:
        recorded = "; ".join(f"{r.code}: {r.text}" for r in item.record.reasons)
        body += f"<p class='note'>Recorded reasons: {text(recorded)}</p>"
    sides = [
        (
            f"Champion {shown.champion_version}",
            None if item.record is None else item.record.explanation,
            "the fast model's raw score (log-odds)" + _served_note(item),
        ),
        (
            f"Challenger {version or ''}",
            item.challenger_explanation,
            "the challenger's raw score (log-odds)",
        ),
    ]
    for title, explanation, total in sides:
        body += f"<h4>{text(title)}</h4>"
        if explanation is None:
            body += "<p class='note'>Not in the store any more (removed by retention).</p>"
            continue
        if number <= WATERFALLS:
            body += figure(
                waterfall_svg(explanation),
                f"{title}: exact TreeSHAP, red raises the risk, blue lowers it; the steps "
                f"add up to {total}.",
            )
        body += _reasons(explanation)
    return head + body


def _served_note(item: Disagreement) -> str:
    record, shown = item.record, item.shadowed
    if record is None:
        return ""
    if record.stage == "sequence":
        return (
            f", not the served {shown.champion_score:.4f}, which the sequence stage "
            "combined with it"
        )
    if shown.champion_action != shown.champion_model_action:
        return f"; a list or rule then made the action {shown.champion_action}"
    return ""


def _disagreements(result: Comparison) -> str:
    if not result.disagreements:
        return "<p class='note'>No shadowed decision was judged differently by the two.</p>"
    rows = [
        (
            Link(d.transaction_id, decision_href(d.transaction_id)),
            d.shadowed.champion_score,
            d.shadowed.champion_model_action,
            d.shadowed.challenger_score,
            d.shadowed.challenger_action,
            d.difference,
            _label(d.shadowed.label),
        )
        for d in result.disagreements
    ]
    summary = table(
        [
            "transaction",
            "champion score",
            "champion model action",
            "challenger score",
            "challenger action",
            "difference",
            "label",
        ],
        rows,
    )
    note = (
        f"<p class='note'>{len(rows)} shadowed decisions: those where the two models chose "
        "different actions first, then the largest |challenger score − champion score|, "
        "ties by transaction id; each side's top reasons below (exact SHAP, log-odds) and "
        "the champion's recorded reasons.</p>"
    )
    return (
        note
        + summary
        + "".join(
            _explained(i, d, result.version) for i, d in enumerate(result.disagreements, start=1)
        )
    )


def challenger_page(
    result: Comparison, period: ChallengerPeriod, versions: Mapping[str, int]
) -> str:
    """The report page. ``versions``: every challenger version with rows in the period and
    how many (the page links to the others)."""
    body = [
        _overview(result, period, versions),
        "<h2>Against the labels</h2>",
        _metrics(result),
        "<h2>Agreement of actions</h2>",
        _agreement(result),
        "<h2>Largest disagreements</h2>",
        _disagreements(result),
    ]
    return page(f"Challenger report — {period.period()}", "".join(body))
