"""How late the event loop runs its callbacks: the wait a request spends before its handler.

Admission control counts the payments its handlers hold, but when the loop is saturated a
request also waits *before* its handler: in the socket, until the loop comes round to read
it. That wait is invisible to a handler, whose clock starts when it runs. Measured: with
every answer's gap counted right, a flood still queued requests for seconds in sockets
while the handlers saw a short queue (``riskscore bench overload``). A timer that asks to
run every ``PERIOD_S`` and measures how late it ran sees that wait: a socket that became
readable just after the loop's last turn waits as long as the timer does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

PERIOD_S = 0.005  # ~200 timer callbacks a second: a few µs of work each


class LoopLag:
    """The event loop's lateness at its last timer tick, started on first use."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.lag_ms = 0.0

    def current_ms(self) -> float:
        """The last measured lateness; starts the timer the first time (on the running loop)."""
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())
        return self.lag_ms

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = self._clock() + PERIOD_S
        self._handle = loop.call_later(PERIOD_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lag_ms = max(0.0, (self._clock() - self._due) * 1000.0)
        if not loop.is_closed():
            self._schedule(loop)
