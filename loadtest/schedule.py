"""The open-loop schedule: requests leave at their intended times, answered or not.

A closed-loop client (send, wait, send) slows down with the server and so hides its
stalls. Here arrival times are fixed in advance (``i / rate``, or the file's own
timestamps); a request whose time has come is handed to the target at once, however many
are still unanswered — up to ``max_outstanding``, beyond which it is counted as dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from loadtest.recorder import Recorder

# Sends in a row without yielding to the event loop when the schedule is behind: answers
# must still be read meanwhile, or the client itself would become the bottleneck.
MAX_BURST = 32


class Target(Protocol):
    """Where requests go (HTTP, Kafka). ``submit`` must not block: it starts the request
    and reports its outcome later through the recorder."""

    def start(self) -> None:
        """Connect before the schedule starts (may block briefly)."""

    def close(self) -> None:
        """Release connections and threads."""

    def submit(self, body: dict[str, object], intended: float) -> None: ...

    def abandon(self, now: float) -> None:
        """Record every request still unanswered as a timeout."""


@dataclass(frozen=True)
class Plan:
    """When and for how long: the first ``warmup_s`` seconds are sent but not measured."""

    duration_s: float
    warmup_s: float = 0.0
    max_outstanding: int = 10_000
    drain_timeout_s: float = 10.0


def fixed_rate(rate: float) -> Iterator[float]:
    """Offsets (s) of a constant arrival rate."""
    return (i / rate for i in itertools.count())


_TIME_EPSILON_S = 1e-9


async def run_schedule(
    recorder: Recorder,
    target: Target,
    bodies: Iterable[dict[str, object]],
    offsets: Iterable[float],
    plan: Plan,
    on_tick: Callable[[Recorder, float], None] | None = None,
    start_delay_s: float = 0.05,
) -> None:
    """Send ``bodies`` at ``start + offset`` until the plan's time is up, then wait (bounded)
    for the answers; ``target`` reports them to ``recorder``."""
    start = time.perf_counter() + start_delay_s
    measure_from = start + plan.warmup_s
    recorder.measure_from = measure_from
    ticker = asyncio.create_task(_ticks(recorder, start, on_tick)) if on_tick else None
    # Offsets are compared with the plan's length, not absolute times with ``end``: with
    # floats, start + 0.3 may fall below (start + 0.1) + 0.2 and send one request too many.
    last_offset = plan.warmup_s + plan.duration_s - _TIME_EPSILON_S
    try:
        burst = 0
        for body, offset in zip(bodies, offsets, strict=False):
            if offset >= last_offset:
                break
            intended = start + offset
            now = time.perf_counter()
            if intended > now:
                await asyncio.sleep(intended - now)
                now, burst = time.perf_counter(), 0
            elif burst >= MAX_BURST:
                await asyncio.sleep(0)
                burst = 0
            burst += 1
            if recorder.outstanding >= plan.max_outstanding:
                recorder.on_dropped(intended)
                continue
            recorder.on_send(intended, now)
            target.submit(body, intended)
        await drain(recorder, plan.drain_timeout_s)
        target.abandon(time.perf_counter())
    finally:
        if ticker is not None:
            ticker.cancel()
    if on_tick is not None:
        on_tick(recorder, time.perf_counter() - start)


async def drain(recorder: Recorder, timeout_s: float) -> None:
    """Until every request sent is answered, or ``timeout_s`` has passed."""
    deadline = time.perf_counter() + timeout_s
    # Polled, not awaited on an event: answers arrive through plain callbacks, and a
    # 10 ms poll adds nothing to the measured latencies (they are already recorded).
    while recorder.outstanding > 0 and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)


async def _ticks(
    recorder: Recorder, start: float, on_tick: Callable[[Recorder, float], None]
) -> None:
    while True:
        await asyncio.sleep(1.0)
        on_tick(recorder, time.perf_counter() - start)
