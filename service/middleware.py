"""Cross-cutting request handling: metrics, one JSON error shape, API keys.

Order (outermost first): metrics see every final status; errors turn every failure,
including aiohttp's own 404/405/413, into ``{"error": {...}}``; auth runs inside so its
401/403 get the same shape.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from explain.audit.store import AuditStoreError
from models.errors import ModelNotReady
from service.api_models import ErrorBody, ErrorResponse, FieldError
from service.errors import (
    AuditUnavailable,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
)
from service.prometheus_metrics import ScoringMetrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Liveness must work without credentials: orchestrators probe it without any.
OPEN_PATHS = frozenset({"/healthz"})
# Readiness and metrics are open too unless the operator asks otherwise: Kubernetes probes
# and Prometheus scrapers are configured without credentials by convention.
PROBE_PATHS = frozenset({"/readyz", "/metrics"})


def error_response(error: ServiceError, headers: dict[str, str] | None = None) -> web.Response:
    body = ErrorResponse(
        error=ErrorBody(
            type=error.type,
            message=error.message,
            fields=[FieldError(**f) for f in error.fields] if error.fields else None,
        )
    )
    return web.Response(
        status=error.status,
        body=body.model_dump_json(exclude_none=True),
        content_type="application/json",
        headers={**(error.headers or {}), **(headers or {})} or None,
    )


def _from_http_exception(exc: web.HTTPException) -> ServiceError:
    if exc.status == 404:
        return NotFound("no such endpoint")
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed; use {exc.headers.get('Allow', '?')}")
    if exc.status == 413:
        return PayloadTooLarge(f"request body too large ({exc.text})")
    generic = ServiceError(exc.reason)
    generic.status = exc.status  # type: ignore[misc]
    generic.type = exc.reason.lower().replace(" ", "_")  # type: ignore[misc]
    return generic


def metrics_middleware(metrics: ScoringMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.observe_request(route, status, time.perf_counter() - started)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(exc)
    except AuditStoreError as exc:
        return error_response(AuditUnavailable(f"audit store unavailable: {exc}"))
    except ModelNotReady as exc:
        return error_response(NotReady(str(exc)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # A 405 must say which methods the path takes (RFC 9110 §15.5.6): keep aiohttp's Allow.
        allow = exc.headers.get("Allow")
        return error_response(_from_http_exception(exc), {"Allow": allow} if allow else None)
    except Exception:
        # A bug, not bad input: log it whole, tell the client only that it happened.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ServiceError("internal error; it has been logged"))


# Key roles. Scoring keys belong to payment backends: they score and send labels.
# Compliance keys belong to reviewers: they search, export and read reports, and cannot
# score (a report reader must not be able to create decisions). Both may read one decision
# by id, readiness, metrics and the OpenAPI document. Admin keys belong to operators: they
# promote model versions (and may read them, as compliance keys may).
SCORING, COMPLIANCE, ADMIN = "scoring", "compliance", "admin"
SCORING_ONLY = frozenset({"/score", "/score/batch", "/labels"})
# Admin keys change what decides (the allow and block lists, the model version) and may
# also read what either other role may read by id.
ADMIN_ONLY = frozenset({ADMIN})
ADMIN_ROUTES = {
    "/models": frozenset({ADMIN, COMPLIANCE}),
    "/models/{version}/promote": ADMIN_ONLY,
    "/models/{version}/challenge": ADMIN_ONLY,
    "/models/challenger": ADMIN_ONLY,
}
ADMIN_PREFIX = "/lists"
# Where the view finds who made a change: the admin key's digest, never the key.
ACTOR = web.RequestKey("riskscore.actor", str)


def key_digest(key: bytes) -> str:
    return "sha256:" + hashlib.sha256(key).hexdigest()[:16]


def required_roles(request: web.Request) -> frozenset[str] | None:
    """The roles an endpoint is reserved to, or None when any role may call it."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    if route in SCORING_ONLY:
        return frozenset({SCORING})
    if route == ADMIN_PREFIX or route.startswith(ADMIN_PREFIX + "/"):
        return ADMIN_ONLY
    if route == "/decisions" or route.startswith("/reports/"):
        return frozenset({COMPLIANCE})
    return ADMIN_ROUTES.get(route)


def auth_middleware(
    keys: tuple[str, ...],
    header: str,
    compliance_keys: tuple[str, ...] = (),
    probes_need_key: bool = False,
    admin_keys: tuple[str, ...] = (),
) -> Middleware:
    open_paths = OPEN_PATHS if probes_need_key else OPEN_PATHS | PROBE_PATHS
    encoded = [(key.encode(), SCORING) for key in keys]
    encoded += [(key.encode(), COMPLIANCE) for key in compliance_keys]
    encoded += [(key.encode(), ADMIN) for key in admin_keys]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        needed = required_roles(request)
        if not keys and needed != ADMIN_ONLY:
            return await handler(request)  # admin keys alone: the rest is open as before
        given = request.headers.get(header)
        if not given:
            raise Unauthorized(f"missing API key: send it in the {header} header")
        # Header bytes that are not UTF-8 arrive as surrogates: keep them, as a wrong key.
        candidate = given.encode("utf-8", "surrogateescape")
        # Compare with every key, without stopping early: the time taken must not reveal
        # how much of a key was right, nor which key matched.
        role: str | None = None
        for key, key_role in encoded:
            if hmac.compare_digest(candidate, key):
                role = key_role
        if role is None:
            raise Forbidden("API key not accepted")
        if role == ADMIN:
            request[ACTOR] = f"admin key {key_digest(candidate)}"
        if needed is not None and role not in needed:
            wanted = " or ".join(sorted(needed))
            article = "an" if wanted[0] in "aeiou" else "a"
            raise Forbidden(f"this endpoint needs {article} {wanted} API key; this is a {role} key")
        return await handler(request)

    return middleware
