"""Overload against a real `riskscore serve` (``riskscore bench overload``).

One server (fresh audit store, Kafka off), three phases on one stream of simulated
payments, open loop, latency from each request's scheduled send time:

1. *probe*: offered more than the service can take, on a server of its own with admission
   control off; the rate of ``200`` answers is its capacity. (Probed with shedding on, the
   rate of ``200`` answers is lower by the time refusals take — ~0.3 ms each through the
   HTTP stack — so the capacity and the overload built on it came out understated.)
2. *overload*: ``factor`` × that capacity (at most ``ceiling``, the load generator's own
   limit on one core) for ``duration_s``: admitted (``200``) and refused (``429``) answers
   are summarised apart, any other outcome is an error;
3. *after*: half the capacity for ``after_s``: the p99 of each second, and how long after the
   overload it took until every later second was back within the SLO.

Every payment acknowledged with ``200`` must then be in the audit store: the caller
checks the data directory once the server has stopped (``stored`` counts what it finds).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.simulated_stream import payload_stream
from loadtest.durations import summary_ms
from loadtest.http_client import Endpoint, HttpTarget
from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan, Target
from loadtest.server_process import BenchError, free_port, riskscore_command, riskscore_env, server
from loadtest.workload import Workload

NO_FILE = Workload([], [])
REFUSED = 429
WARMUP_S = 1.0

Answer = tuple[float, float, int, bytes]  # intended send, arrival, status, body


def measure(
    probe_rate: float = 3000.0,
    probe_s: float = 5.0,
    factor: float = 3.0,
    ceiling: float = 11_000.0,
    duration_s: float = 30.0,
    after_s: float = 15.0,
    slo_ms: float = 50.0,
    stored: Callable[[Path, list[str]], int] | None = None,
    capacity: float | None = None,
) -> dict[str, Any]:
    """The three phases and the check that nothing acknowledged was lost (see the module);
    with ``capacity`` given, no probe: that figure is used."""
    # Enough payments for the fastest the phases can go (the ceiling, unless the capacity
    # is given); ids are never reused, so that no payment is a replay.
    peak = ceiling if capacity is None else min(factor * capacity, ceiling)
    most = (0.0 if capacity is not None else probe_rate * (probe_s + WARMUP_S)) + peak * (
        duration_s + WARMUP_S
    )
    bodies = iter(payload_stream(int(most + peak * (after_s + WARMUP_S)), seed=5))
    tool, serve, placement = _placement()
    acknowledged: list[str] = []
    with tempfile.TemporaryDirectory(prefix="riskscore-overload-bench-") as data_dir:
        probe = None
        if capacity is None:
            with _serving(Path(data_dir) / "probe", serve, tool, admission="false") as served:
                probe = run_loop(_phase(served, bodies, probe_rate, probe_s, []))
            capacity = float(probe["completed_per_s"])
            if capacity <= 0.0:
                raise BenchError(f"no payment was answered in the probe: {probe}")
        with _serving(Path(data_dir) / "overload", serve, tool, admission="true") as served:
            figures = run_loop(
                _drive(served, bodies, capacity, (factor, ceiling, duration_s, after_s))
            )
        acknowledged = figures.pop("acknowledged")
        found = (
            len(acknowledged)
            if stored is None
            else stored(Path(data_dir) / "overload", acknowledged)
        )
    figures = {"capacity_per_s": capacity, "probe": probe, **figures}
    figures["server_cpu_ms_per_refusal"] = _refusal_cost(probe, figures["overload"])
    return {
        **figures,
        "slo_ms": slo_ms,
        "placement": placement,
        "acknowledged": len(acknowledged),
        "lost": len(acknowledged) - found,
        "recovered_within_s": _recovered_within(figures["after"]["p99_by_second_ms"], slo_ms),
    }


def _placement() -> tuple[set[int], list[str], str]:
    """The tool on the first core, the server on the last, where taskset allows."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or not shutil.which("taskset"):
        return set(), [], "not pinned: tool and server share the cores"
    return (
        {cores[0]},
        ["taskset", "-c", str(cores[-1])],
        f"load generator on core {cores[0]}, server on core {cores[-1]}",
    )


@dataclass(frozen=True)
class _Server:
    base: str
    pid: int


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) the process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _serving(data_dir: Path, serve: list[str], tool: set[int], admission: str) -> Iterator[_Server]:
    """A fresh `riskscore serve` (Kafka off) on ``data_dir``; this process on the tool's core
    meanwhile."""
    data_dir.mkdir()
    port = free_port()
    env = riskscore_env(
        port=str(port), data_dir=str(data_dir), kafka="off", admission_control=admission
    )
    base = f"http://127.0.0.1:{port}"
    command = [*serve, *riskscore_command("serve")]
    with server(command, env, f"{base}/readyz", data_dir / "log") as process:
        if tool:
            os.sched_setaffinity(0, tool)
        try:
            yield _Server(base, process.pid)  # taskset execs: the pid is the server's
        finally:
            if tool:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


async def _drive(
    served: _Server,
    bodies: Iterator[dict[str, Any]],
    capacity: float,
    overloading: tuple[float, float, float, float],
) -> dict[str, Any]:
    factor, ceiling, duration_s, after_s = overloading
    acknowledged: list[str] = []
    rate = min(factor * capacity, ceiling)
    overload = await _phase(served, bodies, rate, duration_s, acknowledged)
    after = await _phase(served, bodies, capacity / 2.0, after_s, acknowledged)
    return {"overload": overload, "after": after, "acknowledged": acknowledged}


async def _phase(
    served: _Server,
    bodies: Iterator[dict[str, Any]],
    rate: float,
    seconds: float,
    acknowledged: list[str],
) -> dict[str, Any]:
    answers: list[Answer] = []

    def keep(intended: float, at: float, status: int, body: bytes) -> None:
        answers.append((intended, at, status, body))

    def target(recorder: Recorder) -> Target:
        return HttpTarget(Endpoint.parse(served.base, "/score"), recorder, on_answer=keep)

    recorder = Recorder()
    plan = Plan(duration_s=seconds, warmup_s=WARMUP_S)
    cpu_before = _cpu_s(served.pid)
    report = await run_once(target, NO_FILE, bodies, RunConfig(plan, rate), recorder)
    cpu_s = _cpu_s(served.pid) - cpu_before
    summary = _summarise(answers, recorder, report, rate, seconds, acknowledged)
    # The server's CPU over the phase (warm-up included) per answer it gave: what a
    # decision and what a refusal cost, whatever else shared the machine.
    summary["server_cpu_s"] = cpu_s
    summary["server_cpu_ms_per_answer"] = 1000.0 * cpu_s / max(1, len(answers))
    summary["answers_with_warmup"] = dict(Counter(str(status) for _, _, status, _ in answers))
    return summary


def _summarise(
    answers: list[Answer],
    recorder: Recorder,
    report: dict[str, Any],
    rate: float,
    seconds: float,
    acknowledged: list[str],
) -> dict[str, Any]:
    start = recorder.measure_from
    statuses: Counter[str] = Counter()
    admitted: list[float] = []
    refused: list[float] = []
    by_second: dict[int, list[float]] = {}
    last = start + seconds
    for intended, at, status, body in answers:
        if status == 200:
            # Every acknowledged payment counts for the loss check, warm-up included.
            acknowledged.append(_transaction_id(body))
        if intended < start:
            continue
        statuses[str(status)] += 1
        seconds_taken = at - intended
        last = max(last, at)
        if status == 200:
            admitted.append(seconds_taken)
            by_second.setdefault(int(intended - start), []).append(seconds_taken)
        elif status == REFUSED:
            refused.append(seconds_taken)
    # What the recorder counted that was no answer at all (timeouts, dropped, resets),
    # and answers other than 200 and 429.
    unanswered = {k: v for k, v in report["errors"].items() if not k.isdigit()}
    other = {k: v for k, v in statuses.items() if k not in ("200", str(REFUSED))}
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "sent": report["sent"],
        "statuses": dict(statuses),
        "admitted_per_s": len(admitted) / seconds,
        # Answers per second of wall time, the drain after the phase included: what the
        # service completed, whatever it was offered (the probe's capacity).
        "completed_per_s": len(admitted) / (last - start),
        "admitted_latency": summary_ms(np.array(admitted)),
        "refused_latency": summary_ms(np.array(refused)),
        "other_errors": {**other, **unanswered},
        "p99_by_second_ms": [
            float(np.percentile(np.array(by_second[s]) * 1000.0, 99)) if s in by_second else None
            for s in range(int(seconds))
        ],
    }


def _refusal_cost(probe: dict[str, Any] | None, overload: dict[str, Any]) -> float | None:
    """The server's CPU per 429 in the overload phase, its decisions counted at the probe's
    CPU per decision (every probe answer is a decision): None without a probe or refusals."""
    answered = overload["answers_with_warmup"]
    refused = answered.get(str(REFUSED), 0)
    if probe is None or not refused:
        return None
    decided = sum(n for status, n in answered.items() if status != str(REFUSED))
    decisions_ms = decided * probe["server_cpu_ms_per_answer"]
    return max(0.0, 1000.0 * overload["server_cpu_s"] - decisions_ms) / refused


def _transaction_id(body: bytes) -> str:
    return str(json.loads(body)["transaction_id"])


def _recovered_within(p99_by_second: list[float | None], slo_ms: float) -> float | None:
    """Seconds into the after phase from which every second's p99 is within the SLO."""
    for s in range(len(p99_by_second)):
        if all(v is not None and v <= slo_ms for v in p99_by_second[s:]):
            return float(s)
    return None
