"""Full collections walk only what survived since the last freeze: the serving process
freezes what is alive at intervals, so a pause does not grow with the feature state."""

from __future__ import annotations

import asyncio
import gc
import weakref

from service.heap_settling import HeapSettler, refreeze


class Node:
    other: object = None


def test_refreeze_puts_survivors_out_of_reach_and_reclaims_young_cycles() -> None:
    gc.unfreeze()
    try:
        kept = [[i] for i in range(5_000)]  # long-lived state: must be frozen
        cycle = Node()
        cycle.other = cycle  # young garbage: must be reclaimed, not frozen
        gone = weakref.ref(cycle)
        del cycle
        before = gc.get_freeze_count()
        refreeze()
        assert gc.get_freeze_count() >= before + len(kept)
        assert gone() is None  # a frozen cycle would still be alive
    finally:
        gc.unfreeze()


async def test_the_settler_refreezes_while_serving_and_stops() -> None:
    gc.unfreeze()
    settler = HeapSettler(interval_s=0.01)
    try:
        state = [{"n": i, "history": [i]} for i in range(2_000)]
        settler.start()
        async with asyncio.timeout(10):
            while gc.get_freeze_count() < len(state):
                await asyncio.sleep(0.01)
        await settler.stop()
        settled = gc.get_freeze_count()
        gc.unfreeze()
        more = [[i] for i in range(100)]
        await asyncio.sleep(0.05)  # several intervals: a stopped settler freezes nothing
        assert gc.get_freeze_count() == 0 and settled >= len(state) and more
    finally:
        await settler.stop()
        gc.unfreeze()
