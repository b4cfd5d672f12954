"""Every route of the HTTP API as data: its method and path, the view that answers it, who
may call it, and what it takes and answers. ``service/routes.py`` adds these routes to the
app and ``service/openapi.py`` describes them, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from explain.reports.export import CONTENT_TYPES, FORMATS
from explain.reports.pdf import PAGE_FORMATS, PDF_TYPE
from explain.reports.query import ChallengerPeriod, DecisionFilter, ListFilter, PageRequest
from features.schema import Identifier, Label, Transaction
from models.rules.lists import LIST_NAMES
from service.api_models import (
    BatchRequest,
    BatchResponse,
    DecisionDetail,
    DecisionPage,
    Health,
    LabelBatchRequest,
    LabelBatchResponse,
    LabelResponse,
    ModelsResponse,
    Readiness,
    ScoreResponse,
)
from service.list_models import ListChangeRequest, ListChangeResponse, ListsResponse

# Who may call a route when API keys are configured (service/middleware.py enforces it):
# open - nobody needs a key (liveness); probe - open unless RISKSCORE_PROBES_NEED_KEY;
# any - a scoring or a compliance key; scoring / compliance / admin - that role's keys only
# (admin: RISKSCORE_ADMIN_API_KEYS; refused to everyone without one);
# admin_compliance - an admin or a compliance key.
Access = Literal["open", "probe", "any", "scoring", "compliance", "admin", "admin_compliance"]
Views = Literal["api", "reports", "models", "lists"]

JSON = "application/json"
HTML = "text/html"

# Query and header values as the views read them (service/handlers.py).
EXPLAIN_VALUES = ("reasons", "full")
DEADLINE_HEADER = "X-Deadline-Ms"
EXPLAIN_HEADER = "X-Explain"
MAX_DEADLINE_MS = 60_000.0


@dataclass(frozen=True)
class Body:
    """One answer (or request body): a pydantic model, or a media type with a plain schema."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON
    schema: dict[str, Any] | None = None
    alternatives: tuple[type[BaseModel], ...] = ()
    """Models of which the body is exactly one (JSON)."""
    also: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Further media types the same answer may come as, each with its schema."""


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter with its JSON schema."""

    name: str
    location: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """As aiohttp routes it (``{name}`` or ``{name:regex}`` for a path parameter)."""
    views: Views
    handler: str
    """The method of the views object (``Views`` or ``ReportViews``) that answers."""
    summary: str
    access: Access
    responses: dict[int, Body]
    params: tuple[Param, ...] = ()
    query: type[BaseModel] | None = None
    """A model that validates the whole query string: each field is a query parameter."""
    body: Body | None = None
    errors: tuple[int, ...] = ()
    """Error statuses besides those of the access rule (401/403), each with the error body."""


ERRORS: dict[int, str] = {
    400: "Body is not valid JSON.",
    401: "API key missing (when keys are configured).",
    403: "API key not accepted, or a key of the other role.",
    404: "Nothing found.",
    409: "This transaction_id was scored before with a different body.",
    413: "Body or batch larger than configured.",
    415: "Content type is not application/json.",
    422: "Input does not match the schema (or a rule it states); `fields` names each one."
    " For a model version: it fails its checks (SHA-256s, model), the champion unchanged.",
    429: "Refused before anything was scored or stored: the predicted wait exceeds the"
    " request's budget (overloaded) or the API key is over its rate (rate_limited);"
    " retry after the Retry-After header's seconds.",
    501: "PDF requested, but this installation cannot lay out PDFs (the HTML page works).",
    503: "Not ready, or the audit store could not be read or written.",
}

_EXPLAIN = (
    Param(
        "explain",
        "query",
        {"type": "string", "enum": list(EXPLAIN_VALUES), "default": "reasons"},
        "full adds shap, base_value and raw_score (given once; it wins over X-Explain).",
    ),
    Param(
        EXPLAIN_HEADER,
        "header",
        {"type": "string", "enum": list(EXPLAIN_VALUES)},
        "The same choice as ?explain=, for clients that cannot change the URL.",
    ),
    Param(
        DEADLINE_HEADER,
        "header",
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE_MS},
        "This request's latency budget in milliseconds (default: RISKSCORE_SEQUENCE_BUDGET_MS); "
        "the second stage runs only if it fits.",
    ),
)
_FORMAT = Param(
    "format",
    "query",
    {"type": "string", "enum": list(PAGE_FORMATS), "default": "html"},
    "html, or pdf (the same page laid out for printing).",
)
_PAGE = Body(
    "The report page: HTML, or PDF with format=pdf.",
    media_type=HTML,
    schema={"type": "string"},
    also=((PDF_TYPE, {}),),
)


_TRANSACTION_ID = Param(
    "transaction_id",
    "path",
    TypeAdapter(Identifier).json_schema(),
    "The transaction's id.",
    required=True,
)


_VERSION = Param(
    "version",
    "path",
    {"type": "string", "minLength": 1, "maxLength": 200},
    "The version: its model_version (as decisions record it) or its directory name.",
    required=True,
)


_LIST_PARAMS = (
    Param(
        "list",
        "path",
        {"type": "string", "enum": list(LIST_NAMES)},
        "Block lists win over allow lists; an allow list approves (a block still declines).",
        required=True,
    ),
    Param(
        "value",
        "path",
        {"type": "string", "minLength": 1, "maxLength": 128},
        "The customer or terminal id (a card number follows RISKSCORE_PAN_POLICY).",
        required=True,
    ),
)


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/score",
        "api",
        "score",
        "Score one transaction",
        "scoring",
        {200: Body("The decision (or the earlier one, for a retry).", ScoreResponse)},
        params=_EXPLAIN,
        body=Body("The transaction.", Transaction),
        errors=(400, 409, 413, 415, 422, 429, 503),
    ),
    Route(
        "POST",
        "/score/batch",
        "api",
        "score_batch",
        "Score many transactions together",
        "scoring",
        {200: Body("One result or item error per transaction, in order.", BatchResponse)},
        params=_EXPLAIN,
        body=Body("The transactions.", BatchRequest),
        errors=(400, 413, 415, 422, 429, 503),
    ),
    Route(
        "GET",
        "/decisions/{transaction_id}",
        "api",
        "decision",
        "A stored decision with its full explanation and its labels",
        "any",
        {200: Body("The decision as recorded.", DecisionDetail)},
        params=(_TRANSACTION_ID,),
        # 422: a card number as the id (RISKSCORE_PAN_POLICY=refuse).
        errors=(404, 422, 503),
    ),
    Route(
        "POST",
        "/labels",
        "api",
        "labels",
        "Label feedback: one label, or {labels: [...]}",
        "scoring",
        {
            200: Body(
                "The outcome of the label (or of each label).",
                alternatives=(LabelResponse, LabelBatchResponse),
            )
        },
        body=Body("One label, or a batch of labels.", alternatives=(Label, LabelBatchRequest)),
        errors=(400, 404, 413, 415, 422, 503),
    ),
    Route(
        "GET",
        "/decisions",
        "reports",
        "search",
        "Search decisions, newest first, a page at a time",
        "compliance",
        {200: Body("One page of decisions and the cursor of the next.", DecisionPage)},
        query=PageRequest,
        errors=(422, 503),
    ),
    *(
        Route(
            "GET",
            f"/reports/decisions.{fmt}",
            "reports",
            "export",
            f"Export every matching decision as {fmt.upper()} (streamed)",
            "compliance",
            {
                200: Body(
                    f"One line per decision ({fmt}).",
                    media_type=CONTENT_TYPES[fmt],
                    schema={"type": "string"},
                )
            },
            query=ListFilter,
            errors=(422, 503),
        )
        for fmt in FORMATS
    ),
    Route(
        "GET",
        "/reports/decisions.html",
        "reports",
        "decision_list",
        "The decision list page",
        "compliance",
        {200: Body("The page.", media_type=HTML, schema={"type": "string"})},
        query=PageRequest,
        errors=(422, 503),
    ),
    Route(
        "GET",
        "/reports/decisions/{transaction_id}.html",
        "reports",
        "decision_report",
        "The report page of one decision: score, reasons, model, labels",
        "compliance",
        {200: _PAGE},
        params=(_TRANSACTION_ID, _FORMAT),
        errors=(404, 422, 501, 503),
    ),
    Route(
        "GET",
        "/reports/summary.html",
        "reports",
        "summary_report",
        "The period report: volumes, actions, reasons, drift",
        "compliance",
        {200: _PAGE},
        params=(_FORMAT,),
        query=DecisionFilter,
        errors=(422, 501, 503),
    ),
    Route(
        "GET",
        "/reports/challenger.html",
        "reports",
        "challenger_report",
        "The challenger report: champion against the shadow challenger on the same payments",
        "compliance",
        {200: _PAGE},
        params=(_FORMAT,),
        query=ChallengerPeriod,
        errors=(422, 501, 503),
    ),
    *(
        Route(
            method,
            "/lists/{list}/{value}",
            "lists",
            handler,
            summary,
            "admin",
            {200: Body("The change as recorded (who, when, why).", ListChangeResponse)},
            params=_LIST_PARAMS,
            body=Body(body, ListChangeRequest),
            errors=(400, 404, 413, 415, 422, 503),
        )
        for method, handler, summary, body in (
            (
                "PUT",
                "put_entry",
                "Add a value to an allow or block list",
                "Why (recorded with the change).",
            ),
            (
                "DELETE",
                "delete_entry",
                "Remove a value from an allow or block list",
                "Why (optional; recorded with the change).",
            ),
        )
    ),
    Route(
        "GET",
        "/lists",
        "lists",
        "lists",
        "Every allow and block list as this process applies it",
        "admin",
        {200: Body("The lists and their version.", ListsResponse)},
        errors=(503,),
    ),
    Route(
        "GET",
        "/models",
        "models",
        "models",
        "Model versions: the champion, the challenger, every version with its SHA-256s",
        "admin_compliance",
        {200: Body("The model versions.", ModelsResponse)},
        errors=(503,),
    ),
    Route(
        "POST",
        "/models/{version}/promote",
        "models",
        "promote",
        "Promote a model version to champion (verified load, then an atomic swap)",
        "admin",
        {200: Body("The model versions, the promoted one champion.", ModelsResponse)},
        params=(_VERSION,),
        errors=(404, 422, 503),
    ),
    Route(
        "POST",
        "/models/{version}/challenge",
        "models",
        "challenge",
        "Shadow a model version: it scores every decided payment after its answer, off the "
        "request path, its verdicts stored beside the decisions (verified load first)",
        "admin",
        {200: Body("The model versions, with this one as challenger.", ModelsResponse)},
        params=(_VERSION,),
        errors=(404, 409, 422, 503),
    ),
    Route(
        "DELETE",
        "/models/challenger",
        "models",
        "stop_challenge",
        "Switch the shadow challenger off (every process sharing the model directory)",
        "admin",
        {200: Body("The model versions, without a challenger.", ModelsResponse)},
        errors=(503,),
    ),
    Route(
        "GET",
        "/healthz",
        "api",
        "healthz",
        "Liveness (never needs a key)",
        "open",
        {200: Body("The process is serving.", Health)},
    ),
    Route(
        "GET",
        "/readyz",
        "api",
        "readyz",
        "Readiness: model loaded, state rebuilt, audit store writable",
        "probe",
        {200: Body("Ready to score.", Readiness)},
        errors=(503,),
    ),
    Route(
        "GET",
        "/metrics",
        "api",
        "metrics",
        "Prometheus metrics (riskscore_*)",
        "probe",
        {200: Body("Prometheus text format.", media_type="text/plain", schema={"type": "string"})},
    ),
    Route(
        "GET",
        "/openapi.json",
        "api",
        "openapi",
        "This document",
        "any",
        {200: Body("OpenAPI 3.1.", schema={"type": "object"})},
    ),
)

__all__ = ["ERRORS", "ROUTES", "Access", "Body", "Param", "Route"]
