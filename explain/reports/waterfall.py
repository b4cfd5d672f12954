"""The SHAP waterfall as ``shap.plots.waterfall`` draws it: the base value and the score are
marks, not bars from 0, so the axis spans the steps between them and a step of a tenth is
as readable as the story it tells. Each step is labelled "plain-language name = value";
its contribution is written in a column of its own at the right, so no text can overlap.

The SVG elements carry ids the browser test measures: ``wf-base`` and ``wf-score`` (the
marks), ``wf-step-<i>-up|down`` (the bars, from the base upwards).
"""

from __future__ import annotations

import math
import textwrap

from matplotlib.axes import Axes

from explain.records import Explanation
from explain.reports.charts import COLORS, new_figure, to_svg
from explain.reports.names import name_and_value

DEFAULT_SHOWN = 10
# Descriptions run to ~70 characters; two lines of this width keep the label column narrow.
LABEL_WIDTH = 44
_ROW_IN = 0.42


def _probability(log_odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-log_odds))


def waterfall_steps(
    explanation: Explanation, shown: int = DEFAULT_SHOWN
) -> list[tuple[str, float]]:
    """(label, contribution) steps: the ``shown`` largest by size, each labelled
    "plain-language name = value", then the rest summed as one step so that the steps
    still add up exactly to the raw score."""
    ranked = sorted(explanation.attributions, key=lambda a: abs(a["contribution"]), reverse=True)
    steps = [(name_and_value(a["feature"], a["value"]), a["contribution"]) for a in ranked[:shown]]
    rest = ranked[shown:]
    if rest:
        steps.append((f"{len(rest)} other features", sum(a["contribution"] for a in rest)))
    return steps


def _end_label(name: str, log_odds: float) -> str:
    return f"{name} {log_odds:+.3f} log-odds = {_probability(log_odds):.2%}"


def _right_column(axes: Axes, row: float, text: str, color: str) -> None:
    # x in axes fraction (just right of the plot), y in data: one line per row.
    axes.text(
        1.01, row, text, transform=axes.get_yaxis_transform(), va="center", fontsize=8, color=color
    )


def waterfall_svg(explanation: Explanation, shown: int = DEFAULT_SHOWN) -> str:
    steps = waterfall_steps(explanation, shown)
    base, raw = explanation.base_value, explanation.raw_score
    # Bottom row: the base value; then the steps from the smallest (or the rest) upwards
    # to the largest; top row: the score. The chain reads bottom to top, as in shap.
    figure = new_figure(9.0, 1.3 + _ROW_IN * (len(steps) + 2))
    axes = figure.add_subplot()
    labels = ["base value (average over training)"]
    running = base
    ends = [base]
    for i, (label, value) in enumerate(reversed(steps)):
        row = i + 1
        up = value > 0
        color = COLORS["raises"] if up else COLORS["lowers"]
        axes.barh(
            row,
            value,
            left=running,
            height=0.6,
            color=color,
            gid=f"wf-step-{i}-{'up' if up else 'down'}",
        )
        _right_column(axes, row, f"{value:+.3f}", color)
        labels.append(textwrap.fill(label, LABEL_WIDTH))
        running += value
        ends.append(running)
    top = len(steps) + 1
    labels.append("score")
    for row, value, gid in ((0, base, "wf-base"), (top, raw, "wf-score")):
        axes.vlines(value, row - 0.35, row + 0.35, color=COLORS["total"], linewidth=3, gid=gid)
        axes.axvline(value, color=COLORS["neutral"], linestyle=":", linewidth=0.8)
    _right_column(axes, 0, _end_label("", base).strip(), COLORS["total"])
    _right_column(axes, top, _end_label("", raw).strip(), COLORS["total"])
    low, high = min(ends), max(ends)
    pad = max(high - low, 1e-3) * 0.06
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(-0.6, top + 0.6)
    axes.set_yticks(range(top + 1), labels, fontsize=8)
    axes.set_xlabel("log-odds of fraud (steps from the base value to the score)")
    title = f"Why: {_end_label('base', base)} → {_end_label('score', raw)}"
    axes.set_title(title, fontsize=10)
    return to_svg(figure, title)
