"""A run's figures: the JSON report and the terminal table.

Latency percentiles come from the HDR histogram (3 significant digits); the per-second
series is grouped by *intended* send second, so a stall shows in the seconds it hit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loadtest.recorder import Recorder
from loadtest.server_counters import describe

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
# Points of the latency distribution kept for the plot (HDR style: ever closer to 100).
SPECTRUM = (0.0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100.0)


def latency_summary(recorder: Recorder) -> dict[str, float | None]:
    histogram = recorder.histogram
    if histogram.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES), "max": None, "mean": None}
    out: dict[str, float | None] = {
        name: histogram.get_value_at_percentile(p) / 1000.0 for name, p in PERCENTILES.items()
    }
    out["max"] = histogram.get_max_value() / 1000.0
    out["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
    return out


def timeseries(recorder: Recorder, duration_s: float) -> list[dict[str, Any]]:
    """One entry per second of the measured window, by intended send time."""
    seconds = max(1, math.ceil(duration_s))
    offsets = np.frombuffer(recorder.sample_offsets, dtype=np.float64)
    latency = np.frombuffer(recorder.sample_latency_ms, dtype=np.float64)
    errors = np.frombuffer(recorder.error_offsets, dtype=np.float64)
    ok_second = np.minimum(offsets.astype(np.int64), seconds - 1)
    error_counts = np.bincount(np.minimum(errors.astype(np.int64), seconds - 1), minlength=seconds)
    order = np.argsort(ok_second, kind="stable")
    bounds = np.searchsorted(ok_second[order], np.arange(seconds + 1))
    series = []
    for second in range(seconds):
        values = latency[order[bounds[second] : bounds[second + 1]]]
        entry: dict[str, Any] = {
            "second": second,
            "sent": int(values.size + error_counts[second]),
            "completed": int(values.size),
            "errors": int(error_counts[second]),
        }
        if values.size:
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            entry.update(
                p50_ms=round(float(p50), 3),
                p90_ms=round(float(p90), 3),
                p99_ms=round(float(p99), 3),
                max_ms=round(float(values.max()), 3),
            )
        series.append(entry)
    return series


def build_report(
    recorder: Recorder, target_rate: float | None, duration_s: float, **context: Any
) -> dict[str, Any]:
    """The JSON report; ``context`` (mode, url, ...) is stored as given."""
    histogram = recorder.histogram
    spectrum = (
        [
            {"percentile": p, "latency_ms": histogram.get_value_at_percentile(p) / 1000.0}
            for p in SPECTRUM
        ]
        if histogram.get_total_count()
        else []
    )
    return {
        **context,
        "target_rate": target_rate,
        "achieved_rate": round(recorder.completed / duration_s, 2),
        "duration_s": duration_s,
        "sent": recorder.sent,
        "completed": recorder.completed,
        "errors": dict(sorted(recorder.errors.items())),
        "latency_ms": latency_summary(recorder),
        "max_send_lag_ms": round(recorder.max_send_lag_s * 1000.0, 3),
        "distribution": spectrum,
        "timeseries": timeseries(recorder, duration_s),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def format_report(report: dict[str, Any]) -> str:
    """The terminal table of one run."""
    latency = report["latency_ms"]
    target = report["target_rate"]
    errors = ", ".join(f"{k} {v}" for k, v in report["errors"].items()) or "none"
    rows = [
        ("target rate", "file pace" if target is None else f"{target:,.0f}/s"),
        ("achieved rate (answered)", f"{report['achieved_rate']:,.1f}/s"),
        ("measured", f"{report['duration_s']:g} s"),
        ("sent / answered", f"{report['sent']:,} / {report['completed']:,}"),
        ("errors", errors),
        *((f"latency {name}", f"{_ms(latency[name])} ms") for name in (*PERCENTILES, "max")),
        ("client send lag, max", f"{report['max_send_lag_ms']:,.2f} ms"),
    ]
    if "consumer_lag" in report:
        lag = report["consumer_lag"]
        rows.append(("consumer lag max / last", f"{lag['max']} / {lag['last']}"))
    if "server" in report:
        rows.append(("server (second stage)", describe(report["server"])))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def progress_line(recorder: Recorder, elapsed_s: float) -> str:
    """The live line: where the run is and how it goes so far."""
    p99 = recorder.histogram.get_value_at_percentile(99.0) / 1000.0
    errors = sum(recorder.errors.values())
    phase = "warm-up " if recorder.sent == 0 and recorder.outstanding else ""
    return (
        f"\r{phase}{elapsed_s:6.1f} s  sent {recorder.sent:>9,}  "
        f"answered {recorder.completed:>9,}  errors {errors:>7,}  "
        f"outstanding {recorder.outstanding:>6,}  p99 {p99:8.2f} ms"
    )
