"""The in-process Scorer, stage by stage, against plain ``Booster.predict`` on the same model.

Scores a simulated stream one transaction at a time, each awaited until its audit record
is durable (as the HTTP handler does), with the shipped model and a real SQLite store in
a temporary directory. Every figure comes from the same run, so ratios hold on a noisy
machine even when absolute times drift.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from explain.audit.sqlite_store import SQLiteAuditStore
from features.data import TransactionFrame, frame_from_pandas
from features.definitions import MS_PER_DAY
from features.replay import replay
from features.schema import Transaction
from features.simulator import SimulationConfig, simulate
from models.fast import ModelSlot
from service.benchmarks.stats import summary_ms
from service.scorer import Scorer

# Enough history that every feature window (30 days plus the 7-day label delay) is full.
WARMUP_DAYS = 40
FIRST_CALLS = 20


def bench_transactions(count: int, seed: int) -> tuple[TransactionFrame, list[Transaction]]:
    """A simulated stream: ``WARMUP_DAYS`` of history to fill the state, then ``count`` to time."""
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


async def _run(scorer: Scorer, txs: list[Transaction]) -> tuple[list[float], list[Any]]:
    totals: list[float] = []
    records = []
    for tx in tqdm(txs, desc="scoring", unit="tx", mininterval=1.0):
        started = time.perf_counter()
        scored = await scorer.score(tx)
        totals.append(time.perf_counter() - started)
        records.append(scored.record)
    # The first calls build the explainer and warm caches: not what a running service pays.
    return totals[FIRST_CALLS:], records[FIRST_CALLS:]


def measure(
    artifact_dir: Path, count: int, seed: int = 11, commit_window_ms: float = 1.0
) -> dict[str, Any]:
    history, txs = bench_transactions(count, seed)
    models = ModelSlot()
    model = models.swap(artifact_dir)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteAuditStore(Path(tmp) / "audit.sqlite3", commit_window_ms=commit_window_ms)
        scorer = Scorer(models, store)
        # The history fills every window, as a warm start from the audit store would.
        replay(history, scorer.engine)
        scorer.warmed = True
        try:
            totals, records = asyncio.run(_run(scorer, txs))
        finally:
            store.close()
    features = np.array([[a["value"] for a in r.explanation.attributions] for r in records])
    stages = {
        name: summary_ms([r.timings_ms[name] / 1000.0 for r in records])
        for name in ("features", "model", "explain")
    }
    decided = [r.latency_ms / 1000.0 for r in records]
    stages["decision (features..reasons)"] = summary_ms(decided)
    stages["audit write (group commit)"] = summary_ms(
        [t - d for t, d in zip(totals, decided, strict=True)]
    )
    stages["total (durable decision)"] = summary_ms(totals)
    plain = _plain_predict_seconds(model.booster, features)
    stages["plain Booster.predict"] = summary_ms(plain)
    return {
        "model_version": model.version,
        "transactions": len(records),
        "history_transactions": len(history),
        "stages": stages,
        "ratio_decision_to_predict_p50": stages["decision (features..reasons)"]["p50_ms"]
        / stages["plain Booster.predict"]["p50_ms"],
        "ratio_decision_to_predict_p99": stages["decision (features..reasons)"]["p99_ms"]
        / stages["plain Booster.predict"]["p99_ms"],
    }


def _plain_predict_seconds(booster: Any, features: np.ndarray) -> list[float]:
    """One ``Booster.predict`` call per row, one thread: the floor any scorer sits on."""
    out = []
    for row in features:
        x = row.reshape(1, -1)
        started = time.perf_counter()
        booster.predict(x, num_threads=1)
        out.append(time.perf_counter() - started)
    return out
