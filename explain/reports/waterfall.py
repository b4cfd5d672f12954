"""The SHAP waterfall: from the model's base value, each feature's exact contribution,
to the raw score the decision was taken on (log-odds; the probability is shown beside)."""

from __future__ import annotations

import math

from explain.records import Explanation
from explain.reports.charts import COLORS, new_figure, to_svg

DEFAULT_SHOWN = 10


def _probability(log_odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-log_odds))


def waterfall_steps(
    explanation: Explanation, shown: int = DEFAULT_SHOWN
) -> list[tuple[str, float]]:
    """(label, contribution) steps: the ``shown`` largest by size, then the rest summed
    as one step so that the steps still add up exactly to the raw score."""
    ranked = sorted(explanation.attributions, key=lambda a: abs(a["contribution"]), reverse=True)
    steps = [(a["feature"], a["contribution"]) for a in ranked[:shown]]
    rest = ranked[shown:]
    if rest:
        steps.append((f"{len(rest)} other features", sum(a["contribution"] for a in rest)))
    return steps


def waterfall_svg(explanation: Explanation, shown: int = DEFAULT_SHOWN) -> str:
    steps = waterfall_steps(explanation, shown)
    labels = ["base value", *(name for name, _ in steps), "score"]
    figure = new_figure(7.5, 1.2 + 0.32 * len(labels))
    axes = figure.add_subplot()
    rows = list(range(len(labels)))[::-1]  # first step on top, like the table below it
    base = explanation.base_value
    axes.barh(rows[0], base, color=COLORS["neutral"])
    running = base
    for row, (_, value) in zip(rows[1:-1], steps, strict=True):
        color = COLORS["raises"] if value > 0 else COLORS["lowers"]
        axes.barh(row, value, left=running, color=color)
        axes.annotate(
            f"{value:+.3f}",
            (running + value, row),
            xytext=(3 if value > 0 else -3, 0),
            textcoords="offset points",
            ha="left" if value > 0 else "right",
            va="center",
            fontsize=7,
        )
        running += value
    raw = explanation.raw_score
    axes.barh(rows[-1], raw, color=COLORS["total"])
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_yticks(rows, labels, fontsize=8)
    axes.set_xlabel("log-odds of fraud")
    title = (
        f"SHAP waterfall: base {base:+.3f} ({_probability(base):.2%})"
        f" → score {raw:+.3f} ({_probability(raw):.2%})"
    )
    axes.set_title(title, fontsize=10)
    return to_svg(figure, title)
