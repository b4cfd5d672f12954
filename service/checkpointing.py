"""Checkpoints of the in-process feature state while the service runs, and at shutdown.

The state is captured on the event loop, where it changes, so it is consistent without a
lock: C-level copies only (the engine's arrays, shallow copies of its id maps, label
index and expiry heap, whose keys and values are immutable). Turning those copies into
arrays and JSON, hashing and writing the file run in a thread: at a million decisions
that part took 21 s, which a snapshot built on the loop held the loop for. Only the
``memory`` backend has anything to write: Redis keeps its own state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from features.checkpoint import CheckpointInfo, capture, to_arrays, write_snapshot
from features.online import OnlineFeatureEngine
from features.redis_keys import plan_digest
from service.in_flight import Scored
from service.scorer import Scorer

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "feature-state.checkpoint"
# How long a checkpoint waits for the records of the payments it holds to become durable.
DURABLE_WAIT_S = 30.0


def _durable(future: asyncio.Future[Scored]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class Checkpointer:
    """Writes the scorer's in-process state to ``path`` every ``interval_s``."""

    def __init__(self, scorer: Scorer, path: Path, interval_s: float) -> None:
        self._scorer = scorer
        self.path = path
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._interval_s > 0 and isinstance(self._scorer.engine, OnlineFeatureEngine)

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._every_interval())

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)  # a period, not a wait for anything
            try:
                await self.write()
            except Exception:
                log.exception("writing the feature checkpoint failed; trying again later")

    async def write(self) -> None:
        """One checkpoint now, if the state is whole (after its warm start)."""
        engine = self._scorer.engine
        if not self.enabled or not self._scorer.warmed:
            return
        assert isinstance(engine, OnlineFeatureEngine)
        # Read before the snapshot: every payment written up to the mark was applied before
        # it (a record follows its payment's update), so a restart replays what was
        # written after the mark — however old its event time — and the state refuses by
        # id the ones it already holds.
        written_mark = await asyncio.to_thread(self._scorer.store.written_mark)
        began = time.perf_counter()
        # In the same step as the snapshot (no await between): the payments it may hold
        # whose records are not durable yet. It is written only once they all are — a
        # checkpoint must never know a payment the audit store could lose, or a retry
        # of it after a crash would be refused as already applied.
        registered = self._scorer.registered_decisions()
        captured = capture(engine)
        held = time.perf_counter() - began
        if registered:
            await asyncio.wait(registered, timeout=DURABLE_WAIT_S)
            if not all(_durable(future) for future in registered):
                log.warning(
                    "feature checkpoint skipped: it holds payments whose records are not"
                    " durable (the audit store is failing or slow); the next one will try"
                )
                return
        digest = plan_digest(engine.plan)

        def build_and_write() -> CheckpointInfo:
            return write_snapshot(to_arrays(captured), digest, self.path, written_mark)

        info = await asyncio.to_thread(build_and_write)
        log.info(
            "feature checkpoint written: %d payments, %.1f MB, event loop held %.0f ms",
            info.payments,
            info.size_bytes / 1e6,
            held * 1000,
        )

    async def stop(self) -> None:
        """Stop the period and write a last checkpoint (call after the decisions drained)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.write()
        except Exception:
            log.exception("writing the feature checkpoint at shutdown failed")
