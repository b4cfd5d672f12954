"""The simulated payment streams the benchmarks replay, one home for all of them.

The in-process scorer benchmark and the cascade benchmark (over HTTP) replay
:func:`timed_stream`: weeks of history that fill every feature window, then the payments
to time. The stream benchmark (over Kafka) replays :func:`payload_stream`, a larger
population with no history of its own. Both are pure functions of their arguments (the
simulator is), so every run of a benchmark sends the same payments.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from features.data import TransactionFrame, frame_from_pandas
from features.definitions import MS_PER_DAY
from features.schema import Transaction
from features.simulator import SimulationConfig, simulate

# Enough history that every feature window (30 days plus the 7-day label delay) is full.
WARMUP_DAYS = 40
# Timed payments beyond the count asked for: a benchmark's first calls build caches.
FIRST_CALLS = 20


def timed_stream(count: int, seed: int) -> tuple[TransactionFrame, list[Transaction]]:
    """``WARMUP_DAYS`` of history to fill the state, then ``FIRST_CALLS + count`` payments
    to time (fewer when some of them are zero-amount card checks, which are skipped)."""
    # The population pays about 4,000 times a day: enough days for the timed part.
    days = WARMUP_DAYS + max(10, -(-(count + FIRST_CALLS) // 3000))
    config = SimulationConfig(
        customers=2000, terminals=4000, days=days, start=date(2025, 1, 1), seed=seed
    )
    frame = frame_from_pandas(simulate(config, progress=True), source="simulated")
    start_ms = frame.epoch_ms[0] + WARMUP_DAYS * MS_PER_DAY
    warm = int(np.searchsorted(frame.epoch_ms, start_ms))
    timed = frame.take(slice(warm, warm + FIRST_CALLS + count))
    if len(timed) < count:
        raise ValueError(f"the simulated stream holds only {len(timed)} transactions to time")
    return frame.take(slice(0, warm)), [Transaction.model_validate(p) for p in timed.payloads()]


def payload_stream(count: int, seed: int) -> list[dict[str, object]]:
    """``count`` scoring request bodies (ids ``b-<n>``) of 5,000 customers at 10,000
    terminals from 2025-03-01, over as many days as it takes (10, doubled until enough)."""
    days = 10
    while True:
        config = SimulationConfig(
            customers=5000, terminals=10000, days=days, start=date(2025, 3, 1), seed=seed
        )
        frame = frame_from_pandas(simulate(config, progress=True), source="s")
        out = list(frame.payloads("b-"))
        if len(out) >= count:
            return out[:count]
        days *= 2
