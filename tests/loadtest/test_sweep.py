"""Sweep: rising rates until the objective breaks; capacity for any SLO from the steps."""

from __future__ import annotations

from typing import Any

from loadtest.sweep import capacity, format_sweep, rates, sweep


def _step(rate: float, p99: float | None, errors: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "target_rate": rate,
        "achieved_rate": rate,
        "errors": errors or {},
        "latency_ms": {"p50": None if p99 is None else p99 / 2, "p99": p99, "max": p99},
    }


async def test_the_sweep_stops_at_the_first_step_over_the_slo() -> None:
    # A server whose p99 grows with the rate: 10 ms per 100/s.
    asked: list[float] = []

    async def run_at(rate: float) -> dict[str, Any]:
        asked.append(rate)
        return _step(rate, rate / 10.0)

    result = await sweep(run_at, start=100, step=100, maximum=2000, slo_ms=45.0)

    assert asked == [100, 200, 300, 400, 500]
    assert result["capacity"] == 400
    assert capacity(result["steps"], 20.0) == 200
    assert "capacity at p99 <= 45 ms without errors: 400/s" in format_sweep(result)


async def test_errors_end_the_sweep_even_within_the_slo() -> None:
    async def run_at(rate: float) -> dict[str, Any]:
        return _step(rate, 1.0, {"dropped": 3} if rate >= 300 else None)

    result = await sweep(run_at, start=100, step=100, maximum=1000, slo_ms=50.0)

    assert [s["target_rate"] for s in result["steps"]] == [100, 200, 300]
    assert result["capacity"] == 200


async def test_no_step_held() -> None:
    async def run_at(rate: float) -> dict[str, Any]:
        return _step(rate, None, {"ConnectionRefusedError": 5})

    result = await sweep(run_at, start=100, step=100, maximum=1000, slo_ms=50.0)
    assert result["capacity"] is None
    assert "no step held" in format_sweep(result)


def test_rates_include_the_maximum() -> None:
    assert rates(500, 250, 1500) == [500, 750, 1000, 1250, 1500]
    assert rates(500, 1000, 100) == [500]
