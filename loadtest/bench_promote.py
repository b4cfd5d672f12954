"""Promotion under load (``riskscore bench promote``): model versions promoted back and
forth while the load generator sends payments open-loop at a steady rate.

`riskscore serve` (Kafka off) serves a directory of two versions: the shipped fast model
with its sequence artifact, and the same files as a second version (its manifests name
another version, so the answers say which one decided). After a week of simulated history
(so that customers have sequences and the second stage runs), the timed stream is sent at
``rate``; ``promotions`` times, evenly spread, the other version is promoted over
``POST /models/{version}/promote``. The payments scheduled from the start of a promotion
to ``window_s`` after its answer are the *swap* windows; the rest are *steady*. Reported:
errors, answers per version, and the client-side latency (scheduled send to answer) of
each, with the machine's load average.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from features.simulated_stream import timed_stream
from loadtest.bench_cascade import HISTORY_DAYS, NO_FILE, _send_history, score_target
from loadtest.bench_peers import default_model_dir
from loadtest.durations import summary_ms
from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan
from loadtest.server_process import (
    BenchError,
    free_port,
    riskscore_command,
    riskscore_env,
    server,
)

# The model directory's layout (models/versions.py), spelled out here: the load generator
# does not import the models package.
MANIFEST, SEQUENCE_DIR, POINTER = "manifest.json", "sequence", "champion"
SECOND_SUFFIX = "-second"
PROMOTE_TIMEOUT_S = 120.0
# Keys of the throw-away service the benchmark starts (promotion needs an admin key).
SCORING_KEY, ADMIN_KEY = "bench-scoring-key-0000", "bench-admin-key-00000000"


def model_directory(root: Path) -> tuple[str, str]:
    """Versions ``1`` (as shipped) and ``2`` (the same files, named apart) under ``root``;
    their model versions."""
    shipped = default_model_dir()
    sequence = shipped.parent / "default_sequence_artifact"
    versions = []
    for name, suffix in (("1", ""), ("2", SECOND_SUFFIX)):
        target = root / name
        shutil.copytree(shipped, target)
        shutil.copytree(sequence, target / SEQUENCE_DIR)
        manifest = json.loads((target / MANIFEST).read_text())
        version = manifest["model_version"] + suffix
        # Manifests do not checksum themselves: renaming keeps every file verified.
        manifest["model_version"] = version
        (target / MANIFEST).write_text(json.dumps(manifest))
        seq_manifest = json.loads((target / SEQUENCE_DIR / MANIFEST).read_text())
        seq_manifest["fast_model_version"] = version
        (target / SEQUENCE_DIR / MANIFEST).write_text(json.dumps(seq_manifest))
        versions.append(version)
    (root / POINTER).write_text(versions[0] + "\n")
    return versions[0], versions[1]


def measure(
    rate: float = 100.0,
    seconds: float = 40.0,
    promotions: int = 4,
    warmup_s: float = 5.0,
    window_s: float = 1.0,
) -> dict[str, Any]:
    """One run; see the module's docstring."""
    count = int(rate * (warmup_s + seconds))
    history, txs = timed_stream(count, seed=29)
    recent = history.epoch_ms >= history.epoch_ms[-1] - HISTORY_DAYS * 86_400_000
    before = list(history.take(recent).payloads("h-"))
    bodies = [tx.model_dump(mode="json") for tx in txs][:count]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="riskscore-promote-bench-") as work:
        root = Path(work) / "models"
        root.mkdir()
        versions = model_directory(root)
        port = free_port()
        env = riskscore_env(port=str(port), data_dir=str(Path(work) / "var"), kafka="off")
        env["RISKSCORE_MODEL_DIR"] = str(root)
        # Promotion is refused unless admin keys are configured.
        env["RISKSCORE_API_KEYS"], env["RISKSCORE_ADMIN_API_KEYS"] = SCORING_KEY, ADMIN_KEY
        base = f"http://127.0.0.1:{port}"
        with server(riskscore_command("serve"), env, f"{base}/readyz", Path(work) / "serve.log"):
            run = run_loop(
                _drive(base, before, bodies, rate, seconds, warmup_s, promotions, versions)
            )
    figures = _summarise(run, window_s)
    figures.update(
        rate=rate,
        seconds=seconds,
        warmup_s=warmup_s,
        window_s=window_s,
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count(),
    )
    return figures


async def _drive(
    base: str,
    before: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    warmup_s: float,
    promotions: int,
    versions: tuple[str, str],
) -> dict[str, Any]:
    await _send_history(base, before, {"X-API-Key": SCORING_KEY})
    answers, target = score_target(base, {"X-API-Key": SCORING_KEY})
    recorder = Recorder()

    plan = Plan(duration_s=seconds, warmup_s=warmup_s)
    swaps: list[dict[str, Any]] = []
    promoting = asyncio.create_task(
        _promote_repeatedly(base, recorder, seconds, warmup_s, promotions, versions, swaps)
    )
    report = await run_once(target, NO_FILE, iter(bodies), RunConfig(plan, rate), recorder)
    await promoting
    return {
        "answers": answers,
        "measure_from": recorder.measure_from,
        "errors": report["errors"],
        "swaps": swaps,
    }


async def _promote_repeatedly(
    base: str,
    recorder: Recorder,
    seconds: float,
    warmup_s: float,
    promotions: int,
    versions: tuple[str, str],
    swaps: list[dict[str, Any]],
) -> None:
    """Promote the other version at evenly spaced instants of the measured run."""
    while recorder.measure_from == 0.0:  # the schedule sets it as it starts
        await asyncio.sleep(0.01)
    timeout = aiohttp.ClientTimeout(total=PROMOTE_TIMEOUT_S)
    admin = {"X-API-Key": ADMIN_KEY}
    async with aiohttp.ClientSession(timeout=timeout, headers=admin) as session:
        for k in range(1, promotions + 1):
            at = recorder.measure_from + k * seconds / (promotions + 1)
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            version = versions[k % 2]
            started = time.perf_counter()
            async with session.post(f"{base}/models/{version}/promote") as response:
                status = response.status
                await response.read()
            swaps.append(
                {"version": version, "status": status, "start": started, "end": time.perf_counter()}
            )
    del warmup_s


def _summarise(run: dict[str, Any], window_s: float) -> dict[str, Any]:
    measure_from = run["measure_from"]
    windows = [(s["start"], s["end"] + window_s) for s in run["swaps"]]
    steady: list[float] = []
    swap: list[float] = []
    statuses: Counter[str] = Counter()
    swap_statuses: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for intended, at, status, body in run["answers"]:
        if intended < measure_from:
            continue
        statuses[str(status)] += 1
        if status == 200:
            versions[str(json.loads(body).get("model_version"))] += 1
        seconds = at - intended
        inside = any(start <= intended <= end for start, end in windows)
        (swap if inside else steady).append(seconds)
        if inside:
            swap_statuses[str(status)] += 1
    steady_ms, swap_ms = summary_ms(np.array(steady)), summary_ms(np.array(swap))
    return {
        "statuses": dict(statuses),
        "statuses_during_swaps": dict(swap_statuses),
        "errors": run["errors"],
        "versions_answered": dict(versions),
        "promotions": [
            {
                "version": s["version"],
                "status": s["status"],
                "took_ms": round((s["end"] - s["start"]) * 1000.0, 1),
            }
            for s in run["swaps"]
        ],
        "steady": steady_ms,
        "swap": swap_ms,
        "p99_increase_ms": round(
            swap_ms.get("p99_ms", float("nan")) - steady_ms.get("p99_ms", float("nan")), 2
        ),
    }


def report(figures: dict[str, Any]) -> str:
    s, w = figures["steady"], figures["swap"]
    took = ", ".join(f"{p['took_ms']:.0f}" for p in figures["promotions"])
    lines = [
        f"{figures['rate']:g} payments/s for {figures['seconds']:g} s "
        f"(after {figures['warmup_s']:g} s not counted), {len(figures['promotions'])} "
        f"promotions (ms each, answered: {took}); swap window = promotion + "
        f"{figures['window_s']:g} s; load average before {figures['load_average_before']}, "
        f"after {figures['load_average_after']} on {figures['cpus']} CPUs",
        f"statuses {figures['statuses']} (during swaps {figures['statuses_during_swaps']}), "
        f"client errors {figures['errors']}, "
        f"answers per version {figures['versions_answered']}",
        "| payments | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name, x in (("steady", s), ("during a swap", w)):
        lines.append(
            f"| {name} | {x.get('n', 0)} | {x.get('p50_ms', float('nan')):.2f} "
            f"| {x.get('p99_ms', float('nan')):.2f} | {x.get('max_ms', float('nan')):.2f} |"
        )
    lines.append(f"p99 during a swap - steady p99: {figures['p99_increase_ms']:+.2f} ms")
    return "\n".join(lines)


__all__ = ["BenchError", "measure", "model_directory", "report"]
