"""The cascade over HTTP against a real `riskscore serve`: normal, and with the second stage
slowed down by fault injection.

Each phase starts its own server (fresh audit store, Kafka off), replays the same simulated
stream open-loop at a fixed rate and records, per response, the client-side time from the
scheduled send to the answer, the stage that decided and the fallback reason. With a delay
injected into the second stage, every in-band payment must fall back and no response may
take longer than the budget plus 5 ms.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import aiohttp
import numpy as np

from service.benchmarks.scorer_bench import bench_transactions
from service.benchmarks.stats import summary_ms
from streaming.broker import free_port

BUDGET_SLACK_MS = 5.0
HISTORY_DAYS = 7
HISTORY_BATCH = 500


def measure(
    count: int = 2000,
    rate: float = 100.0,
    delay_ms: float = 200.0,
    budget_ms: float = 50.0,
    warmup: int = 300,
) -> dict[str, Any]:
    """Both phases. Each server first gets the stream's last ``HISTORY_DAYS`` of history in
    batches (so customers have sequences and windows have content), then the first
    ``warmup`` timed payments are sent but not counted (lazy set-up: allocator growth, the
    first WAL pages)."""
    history, txs = bench_transactions(warmup + count, seed=23)
    recent = history.epoch_ms >= history.epoch_ms[-1] - HISTORY_DAYS * 86_400_000
    before = list(history.take(recent).payloads("h-"))
    bodies = [tx.model_dump(mode="json") for tx in txs][: warmup + count]
    return {
        "count": len(bodies) - warmup,
        "warmup": warmup,
        "rate": rate,
        "budget_ms": budget_ms,
        "history_sent_first": len(before),
        "normal": _phase(before, bodies, rate, 0.0, budget_ms, warmup),
        "slow_second_stage": _phase(before, bodies, rate, delay_ms, budget_ms, warmup),
    }


def _phase(
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    delay_ms: float,
    budget_ms: float,
    warmup: int,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="riskscore-cascade-bench-") as data_dir:
        port = free_port()
        env = {
            **os.environ,
            "RISKSCORE_PORT": str(port),
            "RISKSCORE_DATA_DIR": data_dir,
            "RISKSCORE_KAFKA": "off",
            "RISKSCORE_SEQUENCE_BUDGET_MS": str(budget_ms),
            "RISKSCORE_SEQUENCE_FAULT_DELAY_MS": str(delay_ms),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            results = asyncio.run(_replay(base, before, bodies, rate))[warmup:]
        finally:
            server.terminate()
            server.wait(timeout=30)
    return _summarise(results, delay_ms, budget_ms)


async def _replay(
    base: str, before: list[dict[str, Any]], bodies: list[dict[str, Any]], rate: float
) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        await _wait_ready(session, base)
        for i in range(0, len(before), HISTORY_BATCH):
            batch = {"transactions": before[i : i + HISTORY_BATCH]}
            async with session.post(f"{base}/score/batch", json=batch) as response:
                if response.status != 200:
                    raise RuntimeError(f"history batch refused: {await response.text()}")
        started = time.perf_counter()

        async def one(i: int, body: dict[str, Any]) -> dict[str, Any]:
            scheduled = started + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            async with session.post(f"{base}/score", json=body) as response:
                answer = await response.json()
            return {
                "status": response.status,
                "ms": (time.perf_counter() - scheduled) * 1000.0,
                "stage": answer.get("stage"),
                "fallback_reason": answer.get("fallback_reason"),
            }

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))


async def _wait_ready(session: aiohttp.ClientSession, base: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the server at {base} did not become ready in {timeout:.0f} s")


def _summarise(results: list[dict[str, Any]], delay_ms: float, budget_ms: float) -> dict:
    ms = np.array([r["ms"] for r in results])
    escalated = [r for r in results if r["stage"] == "sequence" or r["fallback_reason"]]
    limit = budget_ms + BUDGET_SLACK_MS
    return {
        "fault_delay_ms": delay_ms,
        "statuses": dict(Counter(str(r["status"]) for r in results)),
        "stages": dict(Counter(str(r["stage"]) for r in results)),
        "fallback_reasons": dict(Counter(str(r["fallback_reason"]) for r in escalated)),
        "escalated_share": len(escalated) / len(results),
        "latency_all": summary_ms(ms / 1000.0),
        "latency_escalated": summary_ms(np.array([r["ms"] for r in escalated]) / 1000.0),
        "over_budget_plus_5ms": int((ms > limit).sum()),
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['count']} payments (after {figures['warmup']} not counted) at "
        f"{figures['rate']:g}/s, budget "
        f"{figures['budget_ms']:g} ms; client time from scheduled send to answer (ms)",
        "| phase | escalated | stages | fallback reasons | p50 | p99 | max | max escalated "
        f"| over budget+{BUDGET_SLACK_MS:g} ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("normal", "slow_second_stage"):
        p = figures[name]
        a, e = p["latency_all"], p["latency_escalated"]
        label = name if not p["fault_delay_ms"] else f"+{p['fault_delay_ms']:g} ms injected"
        lines.append(
            f"| {label} | {p['escalated_share']:.1%} | {p['stages']} | {p['fallback_reasons']} "
            f"| {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {a['max_ms']:.2f} "
            f"| {e.get('max_ms', float('nan')):.2f} | {p['over_budget_plus_5ms']} |"
        )
    return "\n".join(lines)
