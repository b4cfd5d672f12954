"""Durable audit writes: SQLite against PostgreSQL, as the service makes them.

``waiters`` coroutines on one event loop each record decisions one after another, every
one awaited until durable (``DecisionLog.append``), as concurrent requests do. Reported
per store and number of waiters: durable decisions per second, the time from submit to
durable (p50/p99), decisions per commit, and the event loop's lag — how late a 1 ms
ticker on the same loop wakes — against the same ticker on an idle loop first: equal lags
show that the durable write keeps off the loop.

Decisions are synthetic but of the real shape (24 features, values and SHAP values, three
reasons), each with a new id, so every one is a real insert.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from explain.audit.store import AuditStore
from explain.decision import Decision, Reasons, encode_json
from explain.schema import ExplanationSchema
from features.schema import Transaction
from loadtest.durations import summary_ms

FEATURES = 24
SCHEMA = ExplanationSchema(
    "tree_shap",
    tuple(f"feature_{i}" for i in range(FEATURES)),
    tuple(f"the feature {i}" for i in range(FEATURES)),
)
_REASONS = encode_json(
    [
        {"code": f"feature_{i}", "value": 1.0, "contribution": 0.1, "direction": "raises",
         "text": f"the feature {i}: 1.00 (raises risk)"}
        for i in range(3)
    ]
)  # fmt: skip


def decision(transaction_id: str, when: datetime, rng: np.random.Generator) -> Decision:
    tx = Transaction(
        transaction_id=transaction_id,
        timestamp=when,
        customer_id=f"c-{rng.integers(5000)}",
        terminal_id=f"t-{rng.integers(10000)}",
        amount=float(rng.uniform(1, 500)),
    )
    return Decision(
        transaction=tx,
        request_sha256=hashlib.sha256(transaction_id.encode()).hexdigest(),
        decided_at=when,
        score=float(rng.uniform(0, 1)),
        action="approve",
        stage="fast",
        fallback=False,
        fallback_reason=None,
        model_version="bench",
        reasons=Reasons((0, 1, 2), ("1.00", "1.00", "1.00"), _REASONS),
        schema=SCHEMA,
        base_value=-2.0,
        raw_score=-1.5,
        values=rng.normal(size=FEATURES),
        contributions=rng.normal(size=FEATURES) / 10,
        review_threshold=0.5,
        decline_threshold=0.9,
        timings_ms={"features": 0.05, "model": 0.1},
        latency_ms=0.3,
    )


async def _ticker(done: asyncio.Event, lags: list[float]) -> None:
    # Wakes every millisecond; how late it wakes is the time the loop (or the machine's
    # other processes) kept it from running.
    while not done.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)


async def _idle_lag(seconds: float) -> dict[str, float]:
    """The ticker's lag with nothing else on the loop: what the machine alone adds."""
    lags: list[float] = []
    done = asyncio.Event()
    tick = asyncio.create_task(_ticker(done, lags))
    await asyncio.sleep(seconds)
    done.set()
    await tick
    return summary_ms(lags)


async def _run(store: AuditStore, decisions: list[Decision], waiters: int) -> dict[str, Any]:
    latencies: list[float] = []
    lags: list[float] = []
    done = asyncio.Event()

    async def waiter(mine: list[Decision]) -> None:
        for item in mine:
            start = time.perf_counter()
            await store.append(item)
            latencies.append(time.perf_counter() - start)

    tick = asyncio.create_task(_ticker(done, lags))
    commits_before = store.stats.commits  # type: ignore[attr-defined]
    began = time.perf_counter()
    await asyncio.gather(*(waiter(decisions[i::waiters]) for i in range(waiters)))
    elapsed = time.perf_counter() - began
    done.set()
    await tick
    commits = store.stats.commits - commits_before  # type: ignore[attr-defined]
    return {
        "waiters": waiters,
        "decisions": len(decisions),
        "decisions_per_s": len(decisions) / elapsed,
        "durable": summary_ms(latencies),
        "decisions_per_commit": len(decisions) / max(commits, 1),
        "loop_lag": summary_ms(lags),
    }


def measure(
    open_stores: dict[str, Callable[[], AuditStore]], count: int, waiters: list[int]
) -> list[dict[str, Any]]:
    """For each store and number of waiters, ``count`` durable decisions (see the doc)."""
    rng = np.random.default_rng(5)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"store": "none (idle loop)", "waiters": 0, "loop_lag": asyncio.run(_idle_lag(3.0))}
    ]
    for name, opener in open_stores.items():
        store = opener()
        try:
            # A first write creates the schema row and warms the connection.
            asyncio.run(store.append(decision(f"warm-{uuid.uuid4()}", start, rng)))
            for w in waiters:
                run = uuid.uuid4().hex[:8]
                decisions = [
                    decision(f"{run}-{i}", start + timedelta(seconds=i), rng) for i in range(count)
                ]
                result = asyncio.run(_run(store, decisions, w))
                rows.append({"store": name, **result})
        finally:
            store.close()
    return rows


def sqlite_opener(directory: Path | None = None) -> Callable[[], AuditStore]:
    from explain.audit.sqlite_store import SQLiteAuditStore

    folder = directory or Path(tempfile.mkdtemp(prefix="riskscore-audit-bench-"))
    return lambda: SQLiteAuditStore(folder / "audit.sqlite3")


def postgres_opener(url: str) -> Callable[[], AuditStore]:
    from explain.audit.postgres_store import PostgresAuditStore

    return lambda: PostgresAuditStore(url)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| store | waiters | durable decisions/s | submit→durable p50 ms | p99 ms "
        "| decisions/commit | loop lag p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lag = r["loop_lag"]
        if "durable" not in r:
            lines.append(
                f"| {r['store']} | – | – | – | – | – | {lag['p99_ms']:.2f} | {lag['max_ms']:.2f} |"
            )
            continue
        d = r["durable"]
        lines.append(
            f"| {r['store']} | {r['waiters']} | {r['decisions_per_s']:,.0f} | {d['p50_ms']:.2f} "
            f"| {d['p99_ms']:.2f} | {r['decisions_per_commit']:.1f} | {lag['p99_ms']:.2f} "
            f"| {lag['max_ms']:.2f} |"
        )
    return "\n".join(lines)
