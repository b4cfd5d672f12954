"""One lifecycle for every process that scores: `riskscore serve` and `riskscore consume`.

Start: the feature state is rebuilt from the audit store in a thread (the scorer refuses
payments until it is whole: HTTP answers 503, the Kafka consumer retries its batch); the
Kafka consumer starts beside it when Kafka is on; the in-process state is checkpointed
periodically, and the drift and decline-precision gauges are recomputed periodically,
when switched on. Stop, in this order: the gauges' refresh (it reads the store), the
consumer (it finishes and commits its batch through the scorer), the rebuild (given the
shutdown time to finish if still running: it reads the store), the second stage's
decisions in flight, the shadow challenger's queue (scored and written within the
shutdown time), the last checkpoint, then the audit store, flushed and closed — so
nothing answered or committed on Kafka is missing from the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from features.online import OnlineFeatureEngine
from features.state import FeatureStateUnavailable
from service.checkpointing import CHECKPOINT_FILE, Checkpointer
from service.model_promotion import served_artifact_dir
from service.model_signals import ModelSignals, SignalsLoop
from service.prometheus_metrics import ScoringMetrics, StreamCollector
from service.scorer import Scorer
from service.settings import Settings
from service.state_lock import StateLock
from service.stream_runner import StreamRunner
from service.warm_start import settle_heap

log = logging.getLogger(__name__)


class ScoringProcess:
    """The scorer's warm start, the Kafka consumer when on, and their shutdown."""

    def __init__(self, settings: Settings, scorer: Scorer, metrics: ScoringMetrics) -> None:
        self.settings = settings
        self.scorer = scorer
        self.metrics = metrics
        self.warm_start: asyncio.Task[int] | None = None
        self.stream: StreamRunner | None = None
        self.signals: SignalsLoop | None = None
        self._shut_down = False
        self.checkpoints = Checkpointer(
            scorer, settings.data_dir / CHECKPOINT_FILE, settings.scoring.checkpoint_interval_s
        )
        # Only the in-process state belongs to the data directory; Redis is shared.
        in_process = isinstance(scorer.engine, OnlineFeatureEngine)
        self._state_lock = StateLock(settings.data_dir) if in_process else None

    async def start(self) -> None:
        """Begin the warm start; start the consumer when Kafka is on (blocks until it runs).

        The consumer starts beside the rebuild (its batches are retried until the state is
        whole). If this fails or is cancelled (a signal during start-up), what was started
        is stopped before the error goes on: its threads would keep the process alive.
        """
        if self._state_lock is not None:
            try:
                self._state_lock.acquire()  # before anything reads or writes the state
            except FeatureStateUnavailable:
                await self.shut_down()  # the store's writer thread would keep the process
                raise
        self.warm_start = asyncio.create_task(asyncio.to_thread(self._warm))
        scoring = self.settings.scoring
        if scoring.signals_interval_s > 0:
            signals = ModelSignals(
                self.scorer.store,
                served_artifact_dir(self.settings, self.scorer),
                self.metrics.registry,
                scoring.signals_window_days,
            )
            self.signals = SignalsLoop(signals, scoring.signals_interval_s)
            self.signals.start(after=self.warm_start)
        self.checkpoints.start()
        if self.scorer.promotion is not None:
            self.scorer.promotion.start_polling(scoring.model_poll_s)
        self.scorer.lists.start(self.settings.rules.lists_poll_ms / 1000.0)
        if self.settings.kafka != "on":
            return
        runner = StreamRunner(self.settings, self.scorer, asyncio.get_running_loop())
        self.stream = runner
        self.metrics.registry.register(
            StreamCollector(lambda: runner.processor.stats if runner.processor else None)
        )
        starting = asyncio.create_task(asyncio.to_thread(runner.start))
        try:
            await asyncio.shield(starting)
        except BaseException:
            # Cancelled (a signal: the start goes on in its thread, so wait for it) or
            # failed (e.g. topics not created after the embedded broker started): nothing
            # would stop the broker or close the store later.
            with contextlib.suppress(Exception):
                await starting
            await self.shut_down()
            raise

    async def shut_down(self) -> None:
        # Once: a failed start shuts down what it began, and its caller may do so again.
        if self._shut_down:
            return
        self._shut_down = True
        settings = self.settings
        if self.scorer.promotion is not None:
            await self.scorer.promotion.stop_polling()
        await self.scorer.lists.stop()
        if self.signals is not None:
            await self.signals.stop(settings.shutdown_timeout_s)
        if self.stream is not None:
            await asyncio.to_thread(self.stream.stop, settings.shutdown_timeout_s)
        if self.warm_start is not None and not self.warm_start.done():
            # The rebuild reads the store from its thread: give it the shutdown time to
            # finish before the store closes under it (a thread cannot be interrupted).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.warm_start), settings.shutdown_timeout_s)
        await self.scorer.drain(settings.shutdown_timeout_s)
        if self.scorer.shadow is not None:
            # After the last decisions (the stage's), before the store closes.
            await self.scorer.shadow.close(settings.shutdown_timeout_s)
        await self.checkpoints.stop()
        await asyncio.to_thread(self.scorer.store.close, settings.shutdown_timeout_s)
        log.info("audit store flushed and closed")
        self.scorer.engine.close()
        if self._state_lock is not None:
            self._state_lock.release()

    def _warm(self) -> int:
        try:
            rebuilt = self.scorer.warm_start(
                self.settings.scoring.warm_start,
                settle=settle_heap,
                checkpoint=self.checkpoints.path if self.checkpoints.enabled else None,
            )
        except Exception as exc:
            # Scoring stays refused and the process says why; the operator must act.
            log.exception("rebuilding the feature state failed")
            self.scorer.warm_error = f"{type(exc).__name__}: {exc}"
            return -1
        log.info("feature state rebuilt from %d stored transactions", rebuilt)
        self.metrics.ready.set(1)
        return rebuilt
