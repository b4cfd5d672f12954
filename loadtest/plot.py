"""The PNG of a run: latency percentiles over time, and the latency distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def plot_report(report: dict[str, Any], out: Path, title: str = "") -> None:
    figure, (over_time, spectrum) = plt.subplots(1, 2, figsize=(13, 4.5))
    series = [s for s in report["timeseries"] if "p50_ms" in s]
    seconds = [s["second"] for s in series]
    for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("max_ms", "max")):
        over_time.plot(seconds, [s[key] for s in series], label=label)
    over_time.set_yscale("log")
    over_time.set_xlabel("second of the run (intended send time)")
    over_time.set_ylabel("latency, ms")
    over_time.set_title("latency over time")
    over_time.legend()
    over_time.grid(True, which="both", alpha=0.3)

    points = [p for p in report["distribution"] if p["percentile"] < 100.0]
    # HDR style: x = 1 / (1 - percentile), so the tail gets the room it deserves.
    spectrum.plot(
        [1.0 / (1.0 - p["percentile"] / 100.0) for p in points],
        [p["latency_ms"] for p in points],
        marker="o",
    )
    spectrum.set_xscale("log")
    ticks = (
        [p for p in (0.0, 90.0, 99.0, 99.9, 99.99) if p <= points[-1]["percentile"]]
        if points
        else []
    )
    spectrum.set_xticks([1.0 / (1.0 - p / 100.0) for p in ticks], [f"{p:g}%" for p in ticks])
    spectrum.set_xlabel("percentile")
    spectrum.set_ylabel("latency, ms")
    spectrum.set_title("latency distribution")
    spectrum.grid(True, which="both", alpha=0.3)

    rate = report["target_rate"]
    figure.suptitle(
        title
        or f"{report.get('mode', '')} {'file pace' if rate is None else f'{rate:g}/s'}: "
        f"{report['completed']:,} answered, {sum(report['errors'].values()):,} errors"
    )
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
