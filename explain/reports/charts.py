"""Charts drawn server-side as inline SVG, so a report page needs nothing from elsewhere.

Figures are built with matplotlib's object API (``Figure``), never ``pyplot``: no global
figure state, no GUI backend, safe to draw in worker threads side by side.
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta

import matplotlib
from matplotlib.figure import Figure

# Set once for the process rather than per chart: rc_context swaps global state, which is
# not safe while other threads draw. A fixed salt makes the same data draw the same SVG;
# text as paths needs no font on the reader's machine.
matplotlib.rcParams["svg.hashsalt"] = "riskscore"
matplotlib.rcParams["svg.fonttype"] = "path"
COLORS = {"raises": "#c0392b", "lowers": "#2471a3", "neutral": "#7f8c8d", "total": "#2c3e50"}


def new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=96, layout="constrained")


def to_svg(figure: Figure, title: str) -> str:
    """The figure as an ``<svg>`` element (no XML prologue) with an accessible title."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def bar_chart(
    labels: Sequence[str], values: Sequence[float], title: str, xlabel: str, color: str
) -> str:
    """Horizontal bars, first label on top; long labels (plain-language feature names)
    wrap onto two lines."""
    figure = new_figure(8.0, 0.9 + 0.36 * max(len(labels), 1))
    axes = figure.add_subplot()
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, list(values), color=color)
    axes.set_yticks(positions, [textwrap.fill(label, 48) for label in labels], fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=10)
    if not labels:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    return to_svg(figure, title)


def histogram_chart(
    edges: Sequence[float],
    counts: Sequence[int],
    title: str,
    markers: dict[str, float],
) -> str:
    """Counts over fixed bins, with vertical lines at named values (the thresholds)."""
    figure = new_figure(7.0, 2.8)
    axes = figure.add_subplot()
    widths = [b - a for a, b in itertools.pairwise(edges)]
    axes.bar(list(edges[:-1]), list(counts), width=widths, align="edge", color=COLORS["total"])
    for name, value in markers.items():
        axes.axvline(value, color=COLORS["raises"], linestyle="--", linewidth=1)
        axes.annotate(name, (value, 1.0), xycoords=("data", "axes fraction"), fontsize=8)
    axes.set_yscale("symlog")
    axes.set_xlabel("score (fraud probability)")
    axes.set_ylabel("decisions")
    axes.set_title(title, fontsize=10)
    return to_svg(figure, title)


def trend_chart(
    starts: Sequence[datetime],
    panels: Sequence[tuple[str, dict[str, Sequence[float | None]]]],
    title: str,
) -> str:
    """Small panels over one time axis, one per (y label, named series); a missing value
    (None) leaves a gap rather than a made-up zero. The first panel's series are bars
    (volumes), the others lines (rates, latencies)."""
    figure = new_figure(8.0, 0.6 + 1.5 * len(panels))
    axes_list = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    palette = [COLORS["total"], COLORS["raises"], "#b9770e", COLORS["lowers"], COLORS["neutral"]]
    width = (starts[1] - starts[0]) * 0.8 if len(starts) > 1 else timedelta(hours=1)
    for n, (axes, (ylabel, series)) in enumerate(zip(axes_list, panels, strict=True)):
        for color, (name, values) in zip(palette, series.items(), strict=False):
            ys = [math.nan if v is None else v for v in values]
            if n == 0:
                axes.bar(list(starts), ys, width=width, align="edge", color=color, label=name)
            else:
                axes.plot(list(starts), ys, marker="o", markersize=3, color=color, label=name)
        axes.set_ylabel(ylabel, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=7, loc="upper left", frameon=False, ncols=len(series))
        axes.margins(y=0.25)
    axes_list[0].set_title(title, fontsize=10)
    figure.autofmt_xdate()
    return to_svg(figure, title)
