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
    rows = [
        ("period", period.period()),
        ("challenger version", result.version or "none"),
        ("champion versions", ", ".join(result.champion_versions) or "none"),
        ("decisions in the period", result.decisions),
        ("shadowed (scored by the challenger too)", _share(result.shadowed, result.decisions)),
        ("labelled, of the shadowed", _share(result.labelled, result.shadowed)),
        ("labelled fraud", result.labelled_fraud),
        ("declined by the champion, no label", result.declined_unlabelled),
    ]
    body = pairs(rows)
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
        ("average precision (labelled)", _ap(ours), _ap(theirs)),
        (
            "precision of declines (labelled)",
            percent(ours.quality.precision),
            percent(theirs.quality.precision),
        ),
        (
            "recall of declines (labelled)",
            percent(ours.quality.recall),
            percent(theirs.quality.recall),
        ),
        ("labelled declines", ours.quality.labelled_declines, theirs.quality.labelled_declines),
        ("declines labelled fraud", ours.quality.true_declines, theirs.quality.true_declines),
        (
            "decline rate (every shadowed decision)",
            percent(ours.decline_rate),
            percent(theirs.decline_rate),
        ),
        ("declines (every shadowed decision)", ours.declines, theirs.declines),
    ]
    note = (
        "<p class='note'>Decline rates are over every shadowed decision, labelled or not. "
        "Average precision, precision and recall are over the shadowed decisions whose "
        "label has arrived (the latest label stands). Declined payments without a label "
        "rarely get one (they never completed) and are left out of these, counted above, "
        "as <code>riskscore train --from-store</code> leaves them out; so are other "
        "unlabelled payments. The champion's action is the one recorded, after any list "
        "or rule.</p>"
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


def _explained(number: int, item: Disagreement) -> str:
    record, challenger = item.record, item.challenger
    tid = record.transaction_id
    head = (
        f"<h3>{number}. <a href='{text(decision_href(tid))}'>{text(tid)}</a>: "
        f"champion {record.score:.4f} ({text(record.action)}), challenger "
        f"{challenger.score:.4f} ({text(challenger.action)}), {text(_label(item.label))}</h3>"
    )
    sides = [
        (f"Champion {record.model_version}", record.explanation),
        (f"Challenger {challenger.model_version}", challenger.explanation),
    ]
    body = ""
    for title, explanation in sides:
        body += f"<h4>{text(title)}</h4>"
        if number <= WATERFALLS:
            body += figure(
                waterfall_svg(explanation),
                f"{title}: exact TreeSHAP, red raises the risk, blue lowers it; the steps "
                "add up to the score.",
            )
        body += _reasons(explanation)
    return head + body


def _disagreements(result: Comparison) -> str:
    if not result.disagreements:
        return "<p class='note'>No shadowed decision was scored differently by the two.</p>"
    rows = [
        (
            Link(d.record.transaction_id, decision_href(d.record.transaction_id)),
            d.record.score,
            d.record.action,
            d.challenger.score,
            d.challenger.action,
            d.difference,
            _label(d.label),
        )
        for d in result.disagreements
    ]
    summary = table(
        [
            "transaction",
            "champion score",
            "champion action",
            "challenger score",
            "challenger action",
            "difference",
            "label",
        ],
        rows,
    )
    note = (
        f"<p class='note'>The {len(rows)} shadowed decisions with the largest |challenger "
        "score − champion score|, ties by transaction id; each side's top reasons below "
        "(exact SHAP, log-odds).</p>"
    )
    return (
        note
        + summary
        + "".join(_explained(i, d) for i, d in enumerate(result.disagreements, start=1))
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
