"""One run: the workload on its schedule into a target, measured into a report."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop

from loadtest.recorder import Recorder
from loadtest.report import build_report, progress_line
from loadtest.schedule import Plan, Target, fixed_rate, run_schedule
from loadtest.workload import Workload, pace_offsets


@dataclass(frozen=True)
class RunConfig:
    """``rate`` requests/s, or (``rate`` None) the file's own pace sped up ``speedup``×."""

    plan: Plan
    rate: float | None = None
    speedup: float = 1.0
    batch_size: int = 1  # transactions per request (``/score/batch``)
    progress: bool = False


def batched(bodies: Iterator[dict[str, object]], size: int) -> Iterator[dict[str, object]]:
    if size == 1:
        return bodies
    return ({"transactions": list(itertools.islice(bodies, size))} for _ in itertools.count())


def arrivals(workload: Workload, config: RunConfig) -> Iterator[float]:
    if config.rate is not None:
        return fixed_rate(config.rate)
    return pace_offsets(workload, config.speedup)  # one transaction per request


async def run_once(
    make_target: Callable[[Recorder], Target],
    workload: Workload,
    bodies: Iterator[dict[str, object]],
    config: RunConfig,
    recorder: Recorder | None = None,
    **context: Any,
) -> dict[str, Any]:
    """Send ``bodies`` (from ``body_stream``: consecutive runs of a sweep continue where
    the last one stopped) into a fresh target, on ``config``'s schedule. A caller that
    wants the raw samples passes its own (fresh) ``recorder``."""
    recorder = recorder if recorder is not None else Recorder()
    target = make_target(recorder)
    target.start()
    # No collections during the run: a full collection over what exists (bodies, a week of
    # history, the answers so far) paused this process 145-200 ms in the middle of a run
    # (measured with a gc callback), and every answer due in that time was counted late
    # against the service. What is alive before it is frozen; cycles made during it wait
    # for the collection after it (a run lasts minutes, its garbage cycles are few).
    # The caller's collector state is given back as it was.
    was_enabled, was_frozen = gc.isenabled(), gc.get_freeze_count() > 0
    gc.collect()
    if not was_frozen:
        gc.freeze()
    gc.disable()
    try:
        await run_schedule(
            recorder,
            target,
            batched(bodies, config.batch_size),
            arrivals(workload, config),
            config.plan,
            _show if config.progress else None,
        )
    finally:
        if was_enabled:
            gc.enable()
        if not was_frozen:
            gc.unfreeze()
        target.close()
        if config.progress:
            print(file=sys.stderr)
    report = build_report(recorder, config.rate, config.plan.duration_s, **context)
    lag_samples = getattr(target, "lag_samples", None)
    if lag_samples is not None:
        add_lag(report, lag_samples, recorder.measure_from)
    return report


_T = TypeVar("_T")


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to the end on a fresh uvloop event loop: the event loop's own overhead
    per request is a good part of the budget."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _show(recorder: Recorder, elapsed_s: float) -> None:
    print(progress_line(recorder, elapsed_s), end="", file=sys.stderr, flush=True)


def add_lag(report: dict[str, Any], samples: list[tuple[float, int]], measure_from: float) -> None:
    """Consumer-lag samples into the report: a summary and each second's last sample."""
    measured = [(at - measure_from, lag) for at, lag in samples if at >= measure_from]
    lags = [lag for _, lag in measured]
    report["consumer_lag"] = {
        "max": max(lags, default=None),
        "last": lags[-1] if lags else None,
        "samples": len(lags),
    }
    series = report["timeseries"]
    for offset, lag in measured:
        second = min(int(offset), len(series) - 1)
        series[second]["consumer_lag"] = lag
