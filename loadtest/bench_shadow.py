"""The shadow challenger's cost (``riskscore bench shadow``): the same payments, open-loop
at the same rate, against `riskscore serve` with the shadow off, then on.

Each phase starts a fresh service (fresh data directory, so a fresh audit store) on a
directory of two versions (``bench_promote.model_directory``: the shipped model, and its
copy under another version name). After a week of simulated history (sent in batches, not
measured), the second phase makes the second version the challenger
(``POST /models/{version}/challenge``), so every payment decided from then on is scored
again in the shadow — the history is not: its backlog would be the shadow catching up on
a week, not keeping pace. Then the timed stream is sent at ``rate`` for ``seconds``. Reported per
phase: the client-side latency (scheduled send to answer) p50/p99/max, errors, the
shadow's counters from ``/metrics``, and — counted in the audit store once the service has
stopped — the share of the measured decisions that have a challenger row; then the
difference of the p99s, with the machine's load average.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from features.simulated_stream import timed_stream
from loadtest.bench_cascade import HISTORY_DAYS, NO_FILE, _send_history, score_target
from loadtest.bench_promote import ADMIN_KEY, PROMOTE_TIMEOUT_S, SCORING_KEY, model_directory
from loadtest.durations import summary_ms
from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan
from loadtest.server_process import BenchError, free_port, riskscore_command, riskscore_env, server

# How many of these transaction ids of the store in this data directory have a challenger
# row (given by the command, which may read the audit store).
ShadowedCount = Callable[[Path, list[str]], int]


def measure(
    rate: float = 100.0,
    seconds: float = 30.0,
    warmup_s: float = 5.0,
    shadowed_count: ShadowedCount | None = None,
) -> dict[str, Any]:
    """Both phases; see the module's docstring."""
    count = int(rate * (warmup_s + seconds))
    history, txs = timed_stream(count, seed=31)
    recent = history.epoch_ms >= history.epoch_ms[-1] - HISTORY_DAYS * 86_400_000
    before = list(history.take(recent).payloads("h-"))
    bodies = [tx.model_dump(mode="json") for tx in txs][:count]
    figures: dict[str, Any] = {}
    for phase in ("off", "on"):
        load_before = os.getloadavg()
        figures[phase] = _phase(
            phase == "on", before, bodies, rate, seconds, warmup_s, shadowed_count
        )
        figures[phase]["load_average_before"] = [round(x, 2) for x in load_before]
        figures[phase]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    off, on = figures["off"]["latency"], figures["on"]["latency"]
    figures.update(
        rate=rate,
        seconds=seconds,
        warmup_s=warmup_s,
        cpus=os.cpu_count(),
        p99_difference_ms=round(
            on.get("p99_ms", float("nan")) - off.get("p99_ms", float("nan")), 3
        ),
    )
    return figures


def _phase(
    shadow: bool,
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    warmup_s: float,
    shadowed_count: ShadowedCount | None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="riskscore-shadow-bench-") as work:
        root = Path(work) / "models"
        root.mkdir()
        _, second = model_directory(root)
        port = free_port()
        data_dir = Path(work) / "var"
        env = riskscore_env(port=str(port), data_dir=str(data_dir), kafka="off")
        env["RISKSCORE_MODEL_DIR"] = str(root)
        env["RISKSCORE_API_KEYS"], env["RISKSCORE_ADMIN_API_KEYS"] = SCORING_KEY, ADMIN_KEY
        env["RISKSCORE_SIGNALS_INTERVAL_S"] = "0"  # no periodic report in either phase
        base = f"http://127.0.0.1:{port}"
        with server(riskscore_command("serve"), env, f"{base}/readyz", Path(work) / "serve.log"):
            challenger = second if shadow else None
            run = run_loop(_drive(base, before, bodies, rate, seconds, warmup_s, challenger))
            counters = _shadow_counters(base)
        # Stopped (SIGTERM): the shadow's queue was drained into the store before it closed.
        measured = run["measured"]
        ids = [tid for tid, _ in measured]
        figures: dict[str, Any] = {
            "shadow": shadow,
            "latency": summary_ms(np.array([s for _, s in measured])),
            "statuses": run["statuses"],
            "errors": run["errors"],
            "counters": counters,
        }
        if shadowed_count is not None:
            rows = shadowed_count(data_dir, ids)
            figures["measured_decisions"] = len(ids)
            figures["with_challenger_row"] = rows
            figures["stored_share"] = round(rows / len(ids), 5) if ids else None
    return figures


async def _drive(
    base: str,
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    warmup_s: float,
    challenger: str | None,
) -> dict[str, Any]:
    headers = {"X-API-Key": SCORING_KEY}
    await _send_history(base, before, headers)
    if challenger is not None:
        admin = {"X-API-Key": ADMIN_KEY}
        timeout = aiohttp.ClientTimeout(total=PROMOTE_TIMEOUT_S)
        url = f"{base}/models/{challenger}/challenge"
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=admin) as session,
            session.post(url) as response,
        ):
            if response.status != 200:
                raise BenchError(f"challenger not set: {await response.text()}")
    answers, target = score_target(base, headers)
    recorder = Recorder()
    plan = Plan(duration_s=seconds, warmup_s=warmup_s)
    report = await run_once(target, NO_FILE, iter(bodies), RunConfig(plan, rate), recorder)
    measured: list[tuple[str, float]] = []
    statuses: dict[str, int] = {}
    for intended, at, status, body in answers:
        if intended < recorder.measure_from:
            continue
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            measured.append((json.loads(body)["transaction_id"], at - intended))
    return {"measured": measured, "statuses": statuses, "errors": report["errors"]}


def _shadow_counters(base: str) -> dict[str, float]:
    """The shadow's counters on ``/metrics`` (scored, dropped by reason, queue depth)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("riskscore_challenger_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            reason = sample.labels.get("reason")
            found[sample.name + (f"{{{reason}}}" if reason else "")] = sample.value
    return found


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['rate']:g} payments/s for {figures['seconds']:g} s "
        f"(after {figures['warmup_s']:g} s not counted), the same payments with the shadow "
        f"off, then on; {figures['cpus']} CPUs",
        "| shadow | n | p50 ms | p99 ms | max ms | errors | with a challenger row "
        "| load average before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("off", "on"):
        f = figures[phase]
        x = f["latency"]
        share = f.get("stored_share")
        stored = (
            "—"
            if share is None or not f["shadow"]
            else (f"{f['with_challenger_row']} ({share:.2%})")
        )
        lines.append(
            f"| {phase} | {x.get('n', 0)} | {x.get('p50_ms', float('nan')):.2f} "
            f"| {x.get('p99_ms', float('nan')):.2f} | {x.get('max_ms', float('nan')):.2f} "
            f"| {f['errors']} | {stored} "
            f"| {f['load_average_before']} → {f['load_average_after']} |"
        )
    lines.append(f"p99 with the shadow on - off: {figures['p99_difference_ms']:+.3f} ms")
    counters = figures["on"]["counters"]
    lines.append("shadow counters: " + ", ".join(f"{k} {v:g}" for k, v in sorted(counters.items())))
    return "\n".join(lines)


__all__ = ["BenchError", "measure", "report"]
