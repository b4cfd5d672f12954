"""Latency summaries from one run: median, tails and maximum of per-item durations.

numpy only (none of the load generator's own dependencies), so the in-process benchmarks
(``service/benchmarks``) summarise with it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summary_ms(seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of per-item durations given in seconds.

    >>> summary_ms([0.001, 0.002, 0.003])["p50_ms"]
    2.0
    >>> summary_ms([])
    {'n': 0}
    """
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
