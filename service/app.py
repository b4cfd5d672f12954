"""The composition root: ``create_app(settings)`` wires model, feature state, explainer,
audit store and HTTP layer together. Only this module and the CLI assemble packages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web
from aiohttp.typedefs import Middleware

from explain.explainer import make_explainer
from features.online import OnlineFeatureEngine
from features.redis_sequences import RedisSequences
from features.redis_state import RedisFeatureState
from features.sequence import SequenceSpec, SequenceStore
from features.state import FeatureState, FeatureStateUnavailable
from models.cascade import Cascade
from models.errors import ArtifactError
from models.fast import ModelSlot
from models.rules.policy import Policy
from models.rules.ruleset import RuleSet
from models.sequence import SequenceModel
from models.versions import ModelDirectory, manifest_for
from service.app_keys import METRICS, SCORER, SETTINGS, STREAM, WARM_START
from service.audit_backend import open_audit_store
from service.card_number_guard import card_number_middleware
from service.challenger import ChallengerSlot
from service.handlers import Views
from service.lifecycle import ScoringProcess
from service.list_handlers import ListViews
from service.middleware import (
    auth_middleware,
    error_middleware,
    metrics_middleware,
)
from service.model_handlers import ModelViews
from service.model_promotion import (
    ModelPromotion,
    cascade_for,
    kept_spec,
    load_version,
    served_artifact_dir,
)
from service.prometheus_metrics import ScoringMetrics
from service.report_handlers import ReportViews
from service.routes import setup_routes
from service.scorer import Scorer
from service.settings import Settings
from service.shadow import Shadow

log = logging.getLogger(__name__)

__all__ = ["METRICS", "SCORER", "SETTINGS", "STREAM", "WARM_START", "build_scorer", "create_app"]


def build_scorer(settings: Settings, metrics: ScoringMetrics | None = None) -> Scorer:
    """The production scorer for these settings: verified model (the champion of a
    directory of versions), the configured audit store (SQLite file, or PostgreSQL with
    RISKSCORE_AUDIT_URL), and its model promotion (``scorer.promotion``)."""
    directory = ModelDirectory(settings.scoring.artifact_dir, settings.second_stage.artifact_dir)
    # Load before anything else opens: a bad artifact should fail start-up with its reason.
    champion = directory.champion()
    if directory.versioned:
        if settings.second_stage.model_dir is not None:
            # Each version brings its own sequence artifact: say so rather than ignore it.
            log.warning(
                "RISKSCORE_SEQUENCE_MODEL_DIR is not used with a directory of model versions "
                "(each version's sequence artifact is in its sequence/ subdirectory)"
            )
        loaded = load_version(champion, settings, None)
        spec = None if settings.sequence == "off" else kept_spec(directory, loaded)
        cascade = loaded.cascade
    else:
        # One artifact, as always: a mismatched sequence artifact stops start-up.
        loaded = load_version(champion, settings.model_copy(update={"sequence": "off"}), None)
        cascade = build_cascade(settings, loaded.model.version)
        spec = None
    models = ModelSlot(loaded.model)
    policy = build_policy(settings, models.model.feature_names)
    store = open_audit_store(settings)
    try:
        engine = build_feature_state(settings)
    except BaseException:
        # Start-up fails here (Redis unreachable): leave no writer thread or connection
        # pool of the store behind in a process that embeds the service.
        store.close()
        raise
    spec = cascade.model.spec if cascade is not None else spec
    scorer = Scorer(
        models,
        store,
        engine=engine,
        sequences=build_sequences(engine, spec),
        reason_count=settings.scoring.reason_count,
        metrics=metrics,
        explainer_factory=lambda model: make_explainer(settings.scoring.explainer, model),
        cascade=cascade,
        budget_ms=settings.second_stage.budget_ms,
        pricing=settings.scoring.pricing(),
        sequence_spec=spec,
        policy=policy,
    )
    registry = None if metrics is None else metrics.registry
    scorer.promotion = ModelPromotion(
        scorer, directory, replace(loaded, cascade=cascade), settings, registry
    )
    shadow = Shadow(store, settings.scoring.challenger_queue_size, registry)
    scorer.set_shadow(shadow)
    scorer.promotion.challenger = ChallengerSlot(scorer, directory, settings, shadow)
    scorer.promotion.challenger.load_at_start()
    return scorer


def build_policy(settings: Settings, feature_names: list[str]) -> Policy:
    """Lists (read from the store at the warm start) and the rule file, if any, checked
    against the model's features: a bad rule stops the start with its line and column
    (:class:`~models.rules.syntax.RuleSyntaxError`)."""
    path = settings.rules.rules_file
    policy = Policy(None if path is None else RuleSet.load(path))
    policy.check(feature_names)
    if policy.rules is not None:
        log.info(
            "%d rules loaded from %s (%s)", len(policy.rules.rules), path, policy.rules_version
        )
    return policy


def build_feature_state(settings: Settings) -> FeatureState:
    """The feature-state backend the settings name: in the process, or Redis."""
    url = settings.scoring.feature_state_url
    if url is None:
        return OnlineFeatureEngine()
    try:
        return RedisFeatureState(url)
    except FeatureStateUnavailable as exc:
        raise FeatureStateUnavailable(f"RISKSCORE_FEATURE_STATE_URL: {exc}") from None


def build_sequences(engine: FeatureState, spec: SequenceSpec | None) -> SequenceStore | None:
    """The customers' sequences live where the feature state does: beside it in Redis,
    or in the process (None: the scorer keeps them)."""
    if spec is None or not isinstance(engine, RedisFeatureState):
        return None
    return RedisSequences(engine, spec)


def build_cascade(settings: Settings, fast_model_version: str) -> Cascade | None:
    """The second stage for these settings, or None when it is switched off."""
    if settings.sequence == "off":
        return None
    try:
        model = SequenceModel.load(settings.second_stage.artifact_dir, fast_model_version)
    except ArtifactError as exc:
        raise ArtifactError(
            f"{exc} (set RISKSCORE_SEQUENCE_MODEL_DIR to a matching sequence artifact, "
            "or RISKSCORE_SEQUENCE=off to serve the fast path alone)"
        ) from None
    return cascade_for(settings, model)


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
    http = settings.http
    if http.api_keys or http.admin_api_keys:
        middlewares.append(
            auth_middleware(
                http.api_keys,
                http.api_key_header,
                http.compliance_api_keys,
                probes_need_key=http.probes_need_key,
                admin_keys=http.admin_api_keys,
            )
        )
    # Inside auth: a caller without a key learns nothing about its URL's ids.
    middlewares.append(card_number_middleware(settings.card_numbers.card_number_policy()))
    app = web.Application(client_max_size=http.max_body_bytes, middlewares=middlewares)
    app[SCORER] = scorer
    app[SETTINGS] = settings
    app[METRICS] = metrics
    setup_routes(
        app,
        Views(scorer, settings, metrics),
        ReportViews(
            scorer.store,
            served_artifact_dir(settings, scorer),
            scorer.complete,
            lambda version: manifest_for(settings.scoring.artifact_dir, version),
        ),
        ModelViews(scorer, admin_keys_set=bool(settings.http.admin_api_keys)),
        ListViews(scorer.store, scorer.lists, scorer.policy, settings),
    )
    if owned:
        app.cleanup_ctx.append(_owned_scorer_lifecycle)
    return app


async def _owned_scorer_lifecycle(app: web.Application) -> AsyncIterator[None]:
    process = ScoringProcess(app[SETTINGS], app[SCORER], app[METRICS])
    await process.start()
    assert process.warm_start is not None
    app[WARM_START] = process.warm_start
    if process.stream is not None:
        app[STREAM] = process.stream
    yield
    # Requests have finished (aiohttp waits up to shutdown_timeout): then the one order.
    await process.shut_down()
