"""Simulated payments as API payloads, for filling a real audit store through the real scorer."""

from __future__ import annotations

from typing import Any

from features.simulator import SimulationConfig
from service.benchmarks.fill_store import payloads as simulated_payloads
from service.benchmarks.fill_store import score_all

__all__ = ["HISTORY", "batches", "payloads", "score_all"]

# Small enough to score in a second or two, large enough for several pages and all actions.
HISTORY = SimulationConfig(customers=40, terminals=80, days=8, seed=3)


def payloads(config: SimulationConfig = HISTORY) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The payments in time order, and each one's fraud label by transaction id."""
    return simulated_payloads(config)


def batches(items: list[Any], size: int = 400) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
