"""Keep the garbage collector's full collections short while the feature state grows.

Collections of the youngest generation are cheap; full ones walk every tracked object, and
the feature state holds millions (id maps, window entries, label references). Measured
under load, a full collection paused the event loop 50-140 ms, growing with the state; on
a quiet machine, one 34 ms pause during a 100/s run after a week of history had come in
through the API (``riskscore bench cascade``): every answer queued behind it.

So the young generation is collected less often, and what is alive is moved out of the
collector's reach (``gc.freeze``): once after the warm start, and again every
``REFREEZE_S`` while serving, so a full collection walks at most the objects that
survived since the last freeze rather than the whole state. ``gc.freeze`` itself only
relinks lists (no walk). Its price: a reference cycle that became garbage while in the
oldest generation and was not yet collected when frozen is kept for the life of the
process. The service makes few such cycles (the full collections of that run reclaimed
0-155 objects each), so the cost is a few kilobytes an hour, against pauses that grow
without bound with the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 50, 100)
# Long enough that what is frozen is mostly long-lived state (windows, sequences) rather
# than requests in flight; short enough that at thousands of payments a second one
# interval's survivors stay a short walk.
REFREEZE_S = 30.0


def settle_heap() -> None:
    """After a warm start: freeze what is alive, collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def refreeze() -> None:
    """Freeze what survived since the last freeze, after a collection of the young
    generations (cheap: they hold at most one threshold's worth of objects), so that
    short-lived cycles are reclaimed rather than frozen."""
    gc.collect(1)
    gc.freeze()


class HeapSettler:
    """Calls :func:`refreeze` every ``interval_s`` on the event loop (the collector runs
    on the loop's thread anyway: a young collection there is what would have happened at
    the next allocation)."""

    def __init__(self, interval_s: float = REFREEZE_S) -> None:
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            refreeze()
            log.debug(
                "heap refrozen: %d objects out of the collector's reach", gc.get_freeze_count()
            )
