"""Capacity: step the rate up until the latency objective breaks; the last rate that held.

A step *holds* when every request was answered without error and the p99 latency (from
intended send times) stayed within the SLO. The capacity for any SLO can be read from the
same steps, so one sweep gives the capacity at 20 ms and at 50 ms alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loadtest.server_counters import describe


def held(report: dict[str, Any], slo_ms: float) -> bool:
    p99 = report["latency_ms"]["p99"]
    return not report["errors"] and p99 is not None and p99 <= slo_ms


def capacity(steps: list[dict[str, Any]], slo_ms: float) -> float | None:
    """Highest rate of the unbroken run of held steps from the first; None if none held."""
    best = None
    for step in steps:
        if not held(step, slo_ms):
            break
        best = step["target_rate"]
    return best


def rates(start: float, step: float, maximum: float) -> list[float]:
    count = int((maximum - start) / step + 1e-9) + 1
    return [start + i * step for i in range(max(1, count))]


async def sweep(
    run_at: Callable[[float], Awaitable[dict[str, Any]]],
    start: float,
    step: float,
    maximum: float,
    slo_ms: float,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``run_at(rate)`` for rising rates until one does not hold (or ``maximum``)."""
    steps: list[dict[str, Any]] = []
    for rate in rates(start, step, maximum):
        report = await run_at(rate)
        steps.append(report)
        if on_step is not None:
            on_step(report)
        if not held(report, slo_ms):
            break
    return {"slo_ms": slo_ms, "capacity": capacity(steps, slo_ms), "steps": steps}


def format_sweep(result: dict[str, Any]) -> str:
    lines = [
        f"{'rate/s':>8} {'answered/s':>10} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    ]
    for step in result["steps"]:
        latency = step["latency_ms"]
        lines.append(
            f"{step['target_rate']:>8,.0f} {step['achieved_rate']:>10,.1f} "
            f"{sum(step['errors'].values()):>7,} {_ms(latency['p50'])} {_ms(latency['p99'])} "
            f"{_ms(latency['max'])}{format_server(step)}"
        )
    found = result["capacity"]
    held_text = "no step held" if found is None else f"{found:,.0f}/s"
    lines.append(f"capacity at p99 <= {result['slo_ms']:g} ms without errors: {held_text}")
    return "\n".join(lines)


def format_server(step: dict[str, Any]) -> str:
    """The step's escalated / fallen-back shares when the server's counters were read."""
    return f"; {describe(step['server'])}" if "server" in step else ""


def _ms(value: float | None) -> str:
    return f"{'-':>9}" if value is None else f"{value:>9,.2f}"
