"""Latency summaries of the in-process benchmarks as a Markdown table."""

from __future__ import annotations


def table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table of summaries, one row per name."""
    lines = ["| stage | p50 ms | p90 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} "
            f"| {s['max_ms']:.3f} |"
        )
    return "\n".join(lines)
