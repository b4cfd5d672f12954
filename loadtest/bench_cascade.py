"""The cascade over HTTP against a real `riskscore serve`: normal, and with the second stage
slowed down by fault injection (``riskscore bench cascade``).

Each phase starts its own server (fresh audit store, Kafka off), sends it a week of
simulated history, then replays the same simulated stream open-loop at a fixed rate with
the load generator's HTTP client and records, per answer, the client-side time from the
scheduled send to the answer, the stage that decided and the fallback reason. The
service's own counters (``/metrics``), read before and after, say the same from its side.
With a delay injected into the second stage, every in-band payment must fall back and no
answer may take longer than the budget plus 5 ms. The shipped band escalates few of these
payments, so a third phase runs the same stream on a sequence artifact whose band takes
every score (given by the caller, which may read the model packages): every payment then
escalates into the slowed stage and has to fall back within its budget.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from features.simulated_stream import timed_stream
from loadtest.durations import summary_ms
from loadtest.http_client import Endpoint, HttpTarget
from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan, Target
from loadtest.server_counters import fallback_reasons, scrape, server_tails, shares
from loadtest.server_process import (
    BenchError,
    free_port,
    riskscore_command,
    riskscore_env,
    server,
)
from loadtest.workload import Workload

BUDGET_SLACK_MS = 5.0
HISTORY_DAYS = 7
HISTORY_BATCH = 500
# The history goes in as fast as one connection takes it, in order (windows fill in time).
AS_FAST_AS_POSSIBLE = 1e9
NO_FILE = Workload([], [])  # bodies come from the simulated stream, at a fixed rate


def measure(
    count: int = 2000,
    rate: float = 100.0,
    delay_ms: float = 200.0,
    budget_ms: float = 50.0,
    warmup: int = 300,
    every_payment_artifact: Path | None = None,
) -> dict[str, Any]:
    """Both phases. Each server first gets the stream's last ``HISTORY_DAYS`` of history in
    batches (so customers have sequences and windows have content), then the first
    ``warmup`` timed payments are sent but not counted (lazy set-up: allocator growth, the
    first WAL pages)."""
    history, txs = timed_stream(warmup + count, seed=23)
    recent = history.epoch_ms >= history.epoch_ms[-1] - HISTORY_DAYS * 86_400_000
    before = list(history.take(recent).payloads("h-"))
    bodies = [tx.model_dump(mode="json") for tx in txs][: warmup + count]
    figures: dict[str, Any] = {
        "count": len(bodies) - warmup,
        "warmup": warmup,
        "rate": rate,
        "budget_ms": budget_ms,
        "history_sent_first": len(before),
        "normal": _phase(before, bodies, rate, 0.0, budget_ms, warmup),
        "slow_second_stage": _phase(before, bodies, rate, delay_ms, budget_ms, warmup),
    }
    if every_payment_artifact is not None:
        figures["slow_every_payment"] = _phase(
            before, bodies, rate, delay_ms, budget_ms, warmup, every_payment_artifact
        )
    return figures


PHASES = ("normal", "slow_second_stage", "slow_every_payment")


def _phase(
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    delay_ms: float,
    budget_ms: float,
    warmup: int,
    sequence_artifact: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="riskscore-cascade-bench-") as data_dir:
        port = free_port()
        settings = (
            {} if sequence_artifact is None else {"sequence_model_dir": str(sequence_artifact)}
        )
        env = riskscore_env(
            port=str(port),
            data_dir=data_dir,
            kafka="off",
            sequence_budget_ms=str(budget_ms),
            sequence_fault_delay_ms=str(delay_ms),
            **settings,
        )
        base = f"http://127.0.0.1:{port}"
        log = Path(data_dir) / "serve.log"
        with server(riskscore_command("serve"), env, f"{base}/readyz", log):
            phase = run_loop(_drive(base, before, bodies, rate, warmup))
    return {
        **_summarise(phase, delay_ms, budget_ms),
        "every_payment_escalated": sequence_artifact is not None,
    }


async def _drive(
    base: str,
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    warmup: int,
) -> dict[str, Any]:
    await _send_history(base, before)
    answers, target = score_target(base)
    recorder = Recorder()

    # Sent at i / rate: every body once, the first ``warmup`` before the measured window.
    plan = Plan(duration_s=(len(bodies) - warmup) / rate, warmup_s=warmup / rate)
    counted_before = await asyncio.to_thread(scrape, f"{base}/metrics")
    report = await run_once(target, NO_FILE, iter(bodies), RunConfig(plan, rate), recorder)
    counted_after = await asyncio.to_thread(scrape, f"{base}/metrics")
    return {
        "answers": answers,
        "measure_from": recorder.measure_from,
        "errors": report["errors"],
        "server": {
            **shares(counted_before, counted_after),
            "fallback_reasons": fallback_reasons(counted_before, counted_after),
            "tails": server_tails(counted_before, counted_after),
        },
    }


Answer = tuple[float, float, int, bytes]  # intended send, answer time, status, body


def score_target(
    base: str, headers: dict[str, str] | None = None
) -> tuple[list[Answer], Callable[[Recorder], Target]]:
    """A ``/score`` target for ``run_once`` that keeps every answer, and the answers."""
    answers: list[Answer] = []

    def keep(intended: float, at: float, status: int, body: bytes) -> None:
        answers.append((intended, at, status, body))

    def target(recorder: Recorder) -> Target:
        endpoint = Endpoint.parse(base, "/score")
        return HttpTarget(endpoint, recorder, headers=headers, on_answer=keep)

    return answers, target


async def _send_history(
    base: str, before: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> None:
    """The history in batches, one at a time over one connection, in time order."""
    batches: list[dict[str, object]] = [
        {"transactions": before[i : i + HISTORY_BATCH]}
        for i in range(0, len(before), HISTORY_BATCH)
    ]

    def target(recorder: Recorder) -> Target:
        endpoint = Endpoint.parse(base, "/score/batch")
        return HttpTarget(endpoint, recorder, headers=headers, max_connections=1, inspect_body=True)

    plan = Plan(duration_s=1.0, drain_timeout_s=600.0)
    config = RunConfig(plan, AS_FAST_AS_POSSIBLE)
    report = await run_once(target, NO_FILE, iter(batches), config)
    if report["errors"] or report["completed"] != len(batches):
        raise BenchError(f"the history was not scored: {report['errors']}")


def _summarise(phase: dict[str, Any], delay_ms: float, budget_ms: float) -> dict[str, Any]:
    """What the client saw of the measured answers, and the server's counters (warm-up
    included: they are read before and after the whole run)."""
    results = []
    for intended, at, status, body in phase["answers"]:
        if intended >= phase["measure_from"]:
            answer = json.loads(body)
            results.append(
                {
                    "status": status,
                    "ms": (at - intended) * 1000.0,
                    "server_ms": answer.get("latency_ms"),
                    "stage": answer.get("stage"),
                    "fallback_reason": answer.get("fallback_reason"),
                    "transaction_id": answer.get("transaction_id"),
                }
            )
    ms = np.array([r["ms"] for r in results])
    escalated = [r for r in results if r["stage"] == "sequence" or r["fallback_reason"]]
    limit = budget_ms + BUDGET_SLACK_MS
    return {
        "fault_delay_ms": delay_ms,
        "statuses": dict(Counter(str(r["status"]) for r in results)),
        "errors": phase["errors"],
        "stages": dict(Counter(str(r["stage"]) for r in results)),
        "fallback_reasons": dict(Counter(str(r["fallback_reason"]) for r in escalated)),
        "escalated_share": len(escalated) / max(len(results), 1),
        "latency_all": summary_ms(ms / 1000.0),
        "latency_escalated": summary_ms(np.array([r["ms"] for r in escalated]) / 1000.0),
        # The service's own time to decide (arrival to decision, before the durable write
        # and the answer's way back): what separates a slow decision from a slow write,
        # network or client.
        "server_decided": summary_ms(
            np.array([r["server_ms"] for r in results if r["server_ms"] is not None]) / 1000.0
        ),
        "over_budget_plus_5ms": int((ms > limit).sum()),
        # Each late answer as the client and the service saw it: where its time went.
        "over_budget_answers": [r for r in results if r["ms"] > limit][:100],
        "server": phase["server"],
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['count']} payments (after {figures['warmup']} not counted) at "
        f"{figures['rate']:g}/s, budget "
        f"{figures['budget_ms']:g} ms; client time from scheduled send to answer (ms)",
        "| phase | escalated | stages | fallback reasons | p50 | p99 | max | max escalated "
        f"| max decided (server) | over budget+{BUDGET_SLACK_MS:g} ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    phases = [name for name in PHASES if name in figures]
    for name in phases:
        p = figures[name]
        a, e, d = p["latency_all"], p["latency_escalated"], p["server_decided"]
        label = name if not p["fault_delay_ms"] else f"+{p['fault_delay_ms']:g} ms injected"
        if p["every_payment_escalated"]:
            label += ", every payment escalated"
        lines.append(
            f"| {label} | {p['escalated_share']:.1%} | {p['stages']} | {p['fallback_reasons']} "
            f"| {a.get('p50_ms', nan):.2f} | {a.get('p99_ms', nan):.2f} "
            f"| {a.get('max_ms', nan):.2f} | {e.get('max_ms', nan):.2f} "
            f"| {d.get('max_ms', nan):.2f} | {p['over_budget_plus_5ms']} |"
        )
    lines.append("the service's counters (warm-up included): fallbacks by reason")
    for name in phases:
        s = figures[name]["server"]
        t = s["tails"]
        lines.append(
            f"  {name}: {s['decisions']} decisions, {s['fallback_reasons'] or 'none'}; "
            f"/score over 50 ms from receipt to response {t['score_over_50ms']} of "
            f"{t['score_requests']}, durable writes over 10 ms {t['store_over_10ms']} of "
            f"{t['store_writes']}"
        )
    return "\n".join(lines)
