"""The load generator does not pause itself to collect garbage while it measures: a full
collection in the middle of a run was counted as the service's latency."""

from __future__ import annotations

import gc

from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_once
from loadtest.schedule import Plan
from loadtest.workload import Workload
from tests.loadtest.conftest import SilentTarget


class CollectorWatchingTarget(SilentTarget):
    """Notes, at each request, whether the collector could run and what it would walk."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.enabled: list[bool] = []
        self.frozen: list[int] = []

    def submit(self, body: dict[str, object], intended: float) -> None:
        self.enabled.append(gc.isenabled())
        self.frozen.append(gc.get_freeze_count())
        super().submit(body, intended)


async def test_no_collection_during_a_run_and_the_collector_is_back_after_it() -> None:
    gc.unfreeze()  # another test's warm start may have frozen its heap in this process
    assert gc.isenabled()
    seen: list[CollectorWatchingTarget] = []

    def target(recorder: Recorder) -> CollectorWatchingTarget:
        seen.append(CollectorWatchingTarget(recorder))
        return seen[0]

    bodies = iter([{"transaction_id": str(i)} for i in range(1_000)])
    plan = Plan(duration_s=0.1, drain_timeout_s=0)
    await run_once(target, Workload([], []), bodies, RunConfig(plan, 200.0))

    watched = seen[0]
    assert len(watched.enabled) == 20
    # While requests went out: no automatic collection, and what was alive before the run
    # (the bodies among it) was out of the collector's reach.
    assert not any(watched.enabled)
    assert min(watched.frozen) > 1_000
    # After it: collections as before, nothing left frozen.
    assert gc.isenabled() and gc.get_freeze_count() == 0


async def test_a_caller_that_turned_the_collector_off_finds_it_off() -> None:
    gc.unfreeze()
    gc.disable()
    try:
        plan = Plan(duration_s=0.02, drain_timeout_s=0)
        bodies = iter([{"transaction_id": str(i)} for i in range(10)])
        await run_once(SilentTarget, Workload([], []), bodies, RunConfig(plan, 200.0))
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
