"""The shadow challenger's cost (``riskscore bench shadow``): the same payments, open-loop
at the same rate, against `riskscore serve` with the shadow off, then on.

On a machine shared with other work the load drifts between two phases by more than the
shadow costs; ``--alternate-s S`` measures within one service instead, the challenger set
and switched off over HTTP every S seconds, each payment counted for the state in force
when it was scheduled (those within :data:`SETTLE_S` of a switch for neither).

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

import asyncio
import contextlib
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
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
# With the shadow switched on and off in one run: payments scheduled this long after a
# switch's answer (or before it) count for neither state.
SETTLE_S = 0.5


def measure(
    rate: float = 100.0,
    seconds: float = 30.0,
    warmup_s: float = 5.0,
    shadowed_count: ShadowedCount | None = None,
    alternate_s: float | None = None,
) -> dict[str, Any]:
    """Both phases (see the module's docstring); with ``alternate_s``, one service whose
    challenger is set and switched off every ``alternate_s`` seconds instead."""
    count = int(rate * (warmup_s + seconds))
    history, txs = timed_stream(count, seed=31)
    recent = history.epoch_ms >= history.epoch_ms[-1] - HISTORY_DAYS * 86_400_000
    before = list(history.take(recent).payloads("h-"))
    bodies = [tx.model_dump(mode="json") for tx in txs][:count]
    stream = Stream(before, bodies, rate, seconds, warmup_s)
    modes: list[Mode] = [False, True] if alternate_s is None else [alternate_s]
    figures: dict[str, Any] = {}
    for mode in modes:
        load_before = [round(x, 2) for x in os.getloadavg()]
        for state, phase in _phase(mode, stream, shadowed_count).items():
            phase["load_average_before"] = load_before
            phase["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            figures[state] = phase
    off, on = figures["off"]["latency"], figures["on"]["latency"]
    figures.update(
        rate=rate,
        seconds=seconds,
        warmup_s=warmup_s,
        alternate_s=alternate_s,
        cpus=os.cpu_count(),
        p99_difference_ms=round(
            on.get("p99_ms", float("nan")) - off.get("p99_ms", float("nan")), 3
        ),
    )
    return figures


@dataclass(frozen=True)
class Stream:
    """What every phase sends: the history, then the timed payments at ``rate``."""

    before: list[dict[str, Any]]
    bodies: list[dict[str, Any]]
    rate: float
    seconds: float
    warmup_s: float


# A phase's shadow: off (False), on (True), or switched every so many seconds (float).
Mode = bool | float


def _phase(
    mode: Mode, stream: Stream, shadowed_count: ShadowedCount | None
) -> dict[str, dict[str, Any]]:
    """One fresh service driven with ``stream``; figures per shadow state ("off", "on")."""
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
            run = run_loop(_drive(base, stream, mode, second))
            counters = _shadow_counters(base)
        # Stopped (SIGTERM): the shadow's queue was drained into the store before it closed.
        figures: dict[str, dict[str, Any]] = {}
        states = ("off", "on") if not isinstance(mode, bool) else ("on" if mode else "off",)
        for state in states:
            measured = [(tid, sec) for tid, sec, on in run["measured"] if on == (state == "on")]
            ids = [tid for tid, _ in measured]
            phase: dict[str, Any] = {
                "shadow": state == "on",
                "latency": summary_ms(np.array([sec for _, sec in measured])),
                "statuses": run["statuses"],
                "errors": run["errors"],
                "counters": counters,
                "switches": run["switches"],
                "store_stage": run["store_stage"].get(state),
            }
            if shadowed_count is not None:
                rows = shadowed_count(data_dir, ids)
                phase["measured_decisions"] = len(ids)
                phase["with_challenger_row"] = rows
                phase["stored_share"] = round(rows / len(ids), 5) if ids else None
            figures[state] = phase
    return figures


async def _drive(base: str, stream: Stream, mode: Mode, challenger: str) -> dict[str, Any]:
    headers = {"X-API-Key": SCORING_KEY}
    _STORE.clear()
    _LAST.clear()
    await _send_history(base, stream.before, headers)
    admin = {"X-API-Key": ADMIN_KEY}
    timeout = aiohttp.ClientTimeout(total=PROMOTE_TIMEOUT_S)
    answers, target = score_target(base, headers)
    recorder = Recorder()
    plan = Plan(duration_s=stream.seconds, warmup_s=stream.warmup_s)
    config = RunConfig(plan, stream.rate)
    # (when the switch was asked, when it was answered, the state after it)
    switches: list[tuple[float, float, bool]] = []
    async with aiohttp.ClientSession(timeout=timeout, headers=admin) as session:
        if mode is True:
            await _switch(session, base, challenger, True, switches)
        switching = None
        if not isinstance(mode, bool):
            switching = asyncio.create_task(
                _alternate(session, base, challenger, recorder, stream, mode, switches)
            )
        report = await run_once(target, NO_FILE, iter(stream.bodies), config, recorder)
        if switching is not None:
            switching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await switching
    measured: list[tuple[str, float, bool | None]] = []
    statuses: dict[str, int] = {}
    for intended, at, status, body in answers:
        if intended < recorder.measure_from:
            continue
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            tid = json.loads(body)["transaction_id"]
            measured.append((tid, at - intended, _state_at(intended, at, switches, mode)))
    return {
        "measured": measured,
        "statuses": statuses,
        "errors": report["errors"],
        "switches": len(switches),
        "store_stage": store_stage(),
    }


async def _switch(
    session: aiohttp.ClientSession,
    base: str,
    challenger: str,
    on: bool,
    switches: list[tuple[float, float, bool]],
) -> None:
    """Set the challenger (``on``) or switch it off, over HTTP as an operator would."""
    await _store_stage(session, base, switches)
    asked = time.perf_counter()
    method, url = (
        ("POST", f"{base}/models/{challenger}/challenge")
        if on
        else ("DELETE", f"{base}/models/challenger")
    )
    async with session.request(method, url) as response:
        if response.status != 200:
            raise BenchError(f"{method} {url}: {response.status} {await response.text()}")
    switches.append((asked, time.perf_counter(), on))


async def _alternate(
    session: aiohttp.ClientSession,
    base: str,
    challenger: str,
    recorder: Recorder,
    stream: Stream,
    every_s: float,
    switches: list[tuple[float, float, bool]],
) -> None:
    """On, off, on, ... every ``every_s`` seconds from the start of the schedule."""
    while recorder.measure_from == 0.0:  # the schedule sets it as it starts
        await asyncio.sleep(0.01)
    start = recorder.measure_from - stream.warmup_s
    k = 0
    while True:
        await asyncio.sleep(max(0.0, start + k * every_s - time.perf_counter()))
        await _switch(session, base, challenger, k % 2 == 0, switches)
        k += 1


# The service's durable-write stage (riskscore_stage_duration_seconds{stage="store"}),
# read at every switch: its growth since the previous switch belongs to the state then in
# force. Keyed by state ("off", "on"): count, sum (s), and counts at or under each bound.
STORE_BOUNDS = ("0.01", "0.025", "0.05", "0.1")
_STORE: dict[str, dict[str, float]] = {}
_LAST: dict[str, float] = {}


async def _store_stage(
    session: aiohttp.ClientSession, base: str, switches: list[tuple[float, float, bool]]
) -> None:
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    now: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "riskscore_stage_duration_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("stage") != "store":
                continue
            if sample.name.endswith("_count") or sample.name.endswith("_sum"):
                now[sample.name.rsplit("_", 1)[1]] = sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") in STORE_BOUNDS:
                now[sample.labels["le"]] = sample.value
    if switches:
        into = _STORE.setdefault("on" if switches[-1][2] else "off", {})
        for key, value in now.items():
            into[key] = into.get(key, 0.0) + value - _LAST.get(key, 0.0)
    _LAST.clear()
    _LAST.update(now)


def store_stage() -> dict[str, dict[str, float]]:
    """Per state: decisions, mean durable-write ms and the share over each bound."""
    out = {}
    for state, x in _STORE.items():
        n = x.get("count", 0.0)
        if not n:
            continue
        out[state] = {
            "n": n,
            "mean_ms": round(1000 * x.get("sum", 0.0) / n, 3),
            **{f"over_{b}_s": round(1 - x.get(b, 0.0) / n, 5) for b in STORE_BOUNDS},
        }
    return out


def _state_at(
    intended: float, at: float, switches: list[tuple[float, float, bool]], mode: Mode
) -> bool | None:
    """Whether the shadow was on for a payment scheduled at ``intended`` and answered at
    ``at``: None when a switch was under way meanwhile (from its request to
    :data:`SETTLE_S` after its answer)."""
    if isinstance(mode, bool):
        return mode
    state: bool | None = None
    for asked, answered, on in switches:
        if asked <= at and intended <= answered + SETTLE_S:
            return None
        if asked < intended:
            state = on
    return state


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
        f"(after {figures['warmup_s']:g} s not counted), "
        + (
            "the same payments with the shadow off, then on"
            if figures["alternate_s"] is None
            else f"one service, the shadow switched on and off every {figures['alternate_s']:g} s"
            f" ({figures['on']['switches']} switches; {SETTLE_S:g} s after each not counted)"
        )
        + f"; {figures['cpus']} CPUs",
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
    for phase in ("off", "on"):
        store = figures[phase].get("store_stage")
        if store:
            lines.append(
                f"durable write (stage store), shadow {phase}: {store['n']:g} decisions, "
                f"mean {store['mean_ms']:.2f} ms, "
                + ", ".join(f"over {b} s {store[f'over_{b}_s']:.2%}" for b in STORE_BOUNDS)
            )
    counters = figures["on"]["counters"]
    lines.append("shadow counters: " + ", ".join(f"{k} {v:g}" for k, v in sorted(counters.items())))
    return "\n".join(lines)


__all__ = ["BenchError", "measure", "report"]
