"""The in-process Scorer, stage by stage, against plain ``Booster.predict`` on the same model.

Scores a simulated stream one transaction at a time, each awaited until its audit record
is durable (as the HTTP handler does), then the same stream (on fresh state) in batches,
each batch awaited until durable (as a micro-batch or a Kafka poll is), with the shipped
model and a real SQLite store in a temporary directory. Besides latencies per stage it
reports the process's CPU time per decision (``time.process_time``: every thread of the
process, the audit writer's included; time spent waiting for fsync is not CPU time). Every
figure comes from the same run, so ratios hold on a noisy machine even when absolute times
drift.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from explain.audit.sqlite_store import SQLiteAuditStore
from features.data import TransactionFrame
from features.rebuild import rebuild_state
from features.schema import Transaction
from features.simulated_stream import FIRST_CALLS, timed_stream
from loadtest.durations import summary_ms
from models.fast import ModelSlot
from service.heap_settling import settle_heap
from service.scorer import Scorer


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, every thread."""
    times = os.times()
    return times.user, times.system


def _cpu_since(start: tuple[float, float]) -> tuple[float, float]:
    user, system = _cpu()
    return user - start[0], system - start[1]


async def _run(
    scorer: Scorer, txs: list[Transaction]
) -> tuple[list[float], list[Any], tuple[float, float]]:
    totals: list[float] = []
    decisions = []
    cpu = _cpu()
    for i, tx in enumerate(tqdm(txs, desc="scoring one by one", unit="tx", mininterval=1.0)):
        if i == FIRST_CALLS:
            cpu = _cpu()
        started = time.perf_counter()
        scored = await scorer.score(tx)
        totals.append(time.perf_counter() - started)
        decisions.append(scored.decision)
    # The first calls build the explainer and warm caches: not what a running service pays.
    return totals[FIRST_CALLS:], decisions[FIRST_CALLS:], _cpu_since(cpu)


async def _run_batches(
    scorer: Scorer, txs: list[Transaction], size: int
) -> tuple[tuple[float, float], int]:
    """(user, system) CPU seconds for ``txs`` after the first batch, ``size`` at a time."""
    chunks = [txs[i : i + size] for i in range(0, len(txs), size)]
    await scorer.score_batch(chunks[0])  # warm caches, as above
    cpu = _cpu()
    for chunk in tqdm(chunks[1:], desc=f"scoring in batches of {size}", unit="batch"):
        await scorer.score_batch(chunk)
    return _cpu_since(cpu), sum(len(c) for c in chunks[1:])


def _scorer(models: ModelSlot, directory: Path, history: TransactionFrame, window: float) -> Any:
    store = SQLiteAuditStore(directory / "audit.sqlite3", commit_window_ms=window)
    scorer = Scorer(models, store)
    scorer.warm_start(from_store=True)  # an empty store: nothing to replay
    # The history fills every window, as a warm start from the audit store would; then the
    # heap is settled as the service settles it after its warm start.
    rebuild_state(history, scorer.engine)
    settle_heap()
    return scorer, store


def measure(
    artifact_dir: Path,
    count: int,
    seed: int = 11,
    commit_window_ms: float = 1.0,
    batch: int = 64,
) -> dict[str, Any]:
    history, txs = timed_stream(count, seed)
    models = ModelSlot()
    model = models.swap(artifact_dir)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "single").mkdir()
        (Path(tmp) / "batched").mkdir()
        scorer, store = _scorer(models, Path(tmp) / "single", history, commit_window_ms)
        try:
            totals, records, cpu_single = asyncio.run(_run(scorer, txs))
        finally:
            store.close()
        scorer, store = _scorer(models, Path(tmp) / "batched", history, commit_window_ms)
        try:
            cpu_batched, batched = asyncio.run(_run_batches(scorer, txs, batch))
        finally:
            store.close()
    features = np.array([r.values for r in records])
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
        # User time: the work of deciding and recording. System time is mostly the kernel's
        # share of each commit's fsync (one per decision when they come one by one).
        "cpu_ms_per_decision_single": cpu_single[0] / len(records) * 1000.0,
        "system_ms_per_decision_single": cpu_single[1] / len(records) * 1000.0,
        "batch_size": batch,
        "cpu_ms_per_decision_batched": cpu_batched[0] / max(batched, 1) * 1000.0,
        "system_ms_per_decision_batched": cpu_batched[1] / max(batched, 1) * 1000.0,
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
