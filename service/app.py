"""The composition root: ``create_app(settings)`` wires model, feature state, explainer,
audit store and HTTP layer together. Only this module and the CLI assemble packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from explain.audit.sqlite_store import SQLiteAuditStore
from explain.explainer import make_explainer
from models.cascade import Cascade, FaultInjection
from models.errors import ArtifactError
from models.fast import ModelSlot
from models.sequence import SequenceModel
from service.app_keys import METRICS, SCORER, SETTINGS, STREAM, WARM_START
from service.handlers import Views
from service.metrics import ScoringMetrics, StreamCollector
from service.middleware import (
    auth_middleware,
    error_middleware,
    metrics_middleware,
)
from service.report_handlers import ReportViews, setup_report_routes
from service.routes import setup_routes
from service.scorer import Scorer
from service.settings import Settings
from service.stream_runner import StreamRunner
from service.warm_start import settle_heap

log = logging.getLogger(__name__)

__all__ = ["METRICS", "SCORER", "SETTINGS", "STREAM", "WARM_START", "build_scorer", "create_app"]


def build_scorer(settings: Settings, metrics: ScoringMetrics | None = None) -> Scorer:
    """The production scorer for these settings: verified model, SQLite audit store."""
    models = ModelSlot()
    # Load before anything else opens: a bad artifact should fail start-up with its reason.
    models.swap(
        settings.artifact_dir, num_threads=settings.predict_threads, predictor=settings.predictor
    )
    cascade = build_cascade(settings, models.model.version)
    store = SQLiteAuditStore(
        settings.audit_path,
        commit_window_ms=settings.audit_commit_window_ms,
        max_batch=settings.audit_max_batch,
        busy_timeout_ms=settings.audit_busy_timeout_ms,
    )
    return Scorer(
        models,
        store,
        reason_count=settings.reason_count,
        metrics=metrics,
        explainer_factory=lambda model: make_explainer(settings.explainer, model),
        cascade=cascade,
        budget_ms=settings.sequence_budget_ms,
    )


def build_cascade(settings: Settings, fast_model_version: str) -> Cascade | None:
    """The second stage for these settings, or None when it is switched off."""
    if settings.sequence == "off":
        return None
    try:
        model = SequenceModel.load(settings.sequence_artifact_dir, fast_model_version)
    except ArtifactError as exc:
        raise ArtifactError(
            f"{exc} (set RISKSCORE_SEQUENCE_MODEL_DIR to a matching sequence artifact, "
            "or RISKSCORE_SEQUENCE=off to serve the fast path alone)"
        ) from None
    return Cascade(
        model,
        reserve_ms=settings.sequence_reserve_ms,
        faults=FaultInjection(
            delay_ms=settings.sequence_fault_delay_ms,
            error_rate=settings.sequence_fault_error_rate,
        ),
    )


def create_app(settings: Settings, scorer: Scorer | None = None) -> web.Application:
    """The whole service as an aiohttp application.

    With ``scorer`` given (tests, embedding) the caller owns it: the app neither warms
    nor closes it. Otherwise the app builds one from ``settings``, rebuilds its feature
    state from the audit store in the background (``/readyz`` says when it is done), and
    flushes and closes the audit store on shutdown.
    """
    metrics = ScoringMetrics()
    owned = scorer is None
    if scorer is None:
        scorer = build_scorer(settings, metrics)
    middlewares: list[Middleware] = [metrics_middleware(metrics), error_middleware]
    if settings.api_keys:
        middlewares.append(
            auth_middleware(
                settings.api_keys, settings.api_key_header, settings.compliance_api_keys
            )
        )
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[SCORER] = scorer
    app[SETTINGS] = settings
    app[METRICS] = metrics
    setup_routes(app, Views(scorer, settings, metrics))
    setup_report_routes(app, ReportViews(scorer.store, settings.artifact_dir, scorer.complete))
    if owned:
        app.cleanup_ctx.append(_owned_scorer_lifecycle)
    return app


async def _owned_scorer_lifecycle(app: web.Application) -> AsyncIterator[None]:
    scorer = app[SCORER]
    settings = app[SETTINGS]
    # In a thread so the server answers /healthz and /readyz while it runs; scoring
    # waits for it (the handlers refuse with 503 until the state is whole).
    app[WARM_START] = asyncio.create_task(
        asyncio.to_thread(_warm, scorer, settings.warm_start, app[METRICS])
    )
    runner = None
    if settings.kafka == "on":
        runner = StreamRunner(settings, scorer, asyncio.get_running_loop())
        app[STREAM] = runner
        app[METRICS].registry.register(
            StreamCollector(lambda: runner.processor.stats if runner.processor else None)
        )
        starting = asyncio.create_task(asyncio.to_thread(runner.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # A signal during start-up: aiohttp cancels start-up and never runs the part
            # after ``yield``, so stop here what was started (the consumer thread, the
            # broker, the audit writer), or its threads would keep the process alive.
            with contextlib.suppress(Exception):
                await starting
            await _shut_down(app, runner)
            raise
    yield
    await _shut_down(app, runner)


async def _shut_down(app: web.Application, runner: StreamRunner | None) -> None:
    scorer = app[SCORER]
    settings = app[SETTINGS]
    if runner is not None:
        # First the consumer (it finishes and commits its batch through the scorer), then
        # the store: nothing committed on Kafka is missing from the audit trail.
        await asyncio.to_thread(runner.stop, settings.shutdown_timeout_s)
    task = app.get(WARM_START)
    if task is not None and not task.done():
        task.cancel()  # the thread finishes its replay; nothing waits for it
    # Requests have finished (aiohttp waits up to shutdown_timeout): make everything durable.
    await scorer.drain(settings.shutdown_timeout_s)
    await asyncio.to_thread(scorer.store.close, settings.shutdown_timeout_s)
    log.info("audit store flushed and closed")


def _warm(scorer: Scorer, from_store: bool, metrics: ScoringMetrics) -> int:
    try:
        replayed = scorer.warm_start(from_store, settle=settle_heap)
    except Exception as exc:
        # Scoring stays refused (503) and /readyz says why; the operator must act.
        log.exception("rebuilding the feature state failed")
        scorer.warm_error = f"{type(exc).__name__}: {exc}"
        return -1
    log.info("feature state rebuilt from %d stored transactions", replayed)
    metrics.ready.set(1)
    return replayed
