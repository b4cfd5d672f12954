"""Helpers for the load generator's tests: a simulated transaction file, a fake target."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from features.simulator import SimulationConfig, simulate
from loadtest.recorder import Recorder
from tests.streaming.conftest import broker  # noqa: F401  (the same real broker fixture)


@pytest.fixture(scope="session")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated history in the handbook schema."""
    config = SimulationConfig(customers=40, terminals=80, days=6, start=date(2025, 3, 1), seed=3)
    path = tmp_path_factory.mktemp("loadtest") / "history.csv"
    simulate(config).to_csv(path, index=False)
    return path


class SilentTarget:
    """Accepts every request and answers none until told: shows what the schedule does on
    its own. ``sent_at`` keeps (intended, actual) times of each submit."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.sent_at: list[tuple[float, float]] = []
        self.bodies: list[dict[str, object]] = []
        self.pending: list[float] = []

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def submit(self, body: dict[str, object], intended: float) -> None:
        self.sent_at.append((intended, time.perf_counter()))
        self.bodies.append(body)
        self.pending.append(intended)

    def abandon(self, now: float) -> None:
        for intended in self.pending:
            self.recorder.on_abandoned(intended, now)
        self.pending.clear()
