"""Latency summaries shared by the benchmarks: medians, tails and ratios from one run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summary_ms(seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of per-item durations given in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "n": int(ms.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
    }


def table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table of summaries, one row per name."""
    lines = ["| stage | p50 ms | p90 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} "
            f"| {s['max_ms']:.3f} |"
        )
    return "\n".join(lines)
