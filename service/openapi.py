"""``/openapi.json``: generated from the route table (``service/api_routes.py``) and the
pydantic models of bodies and query strings, for the settings the service runs with (the
API key header, which routes need which key, the batch limit)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api_models import ErrorResponse
from service.api_routes import ERRORS, ROUTES, Body, Param, Route
from service.settings import HttpSettings

_REF = "#/components/schemas/{model}"
SCORING_SCHEME, COMPLIANCE_SCHEME = "scoringKey", "complianceKey"
ADMIN_SCHEME = "adminKey"


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _content(body: Body) -> dict[str, Any]:
    if body.model is not None:
        schema = _ref(body.model)
    elif body.alternatives:
        schema = {"oneOf": [_ref(m) for m in body.alternatives]}
    else:
        schema = body.schema or {}
    return {body.media_type: {"schema": schema}, **{t: {"schema": s} for t, s in body.also}}


def _models() -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    """Models read from clients (validation schema) and models written to them."""
    read: list[type[BaseModel]] = []
    written: list[type[BaseModel]] = [ErrorResponse]
    for route in ROUTES:
        if route.query is not None:
            read.append(route.query)
        if route.body is not None:
            read += [route.body.model] if route.body.model else list(route.body.alternatives)
        for answer in route.responses.values():
            written += [answer.model] if answer.model else list(answer.alternatives)
    return list(dict.fromkeys(read)), list(dict.fromkeys(written))


def _query_value(schema: dict[str, Any]) -> dict[str, Any]:
    """A model field's schema as a query parameter's: a query value is never null, and a
    time may be a date (the whole UTC day) or an ISO 8601 date-time."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    value = dict(options[0]) if len(options) == 1 else {"anyOf": options}
    for key in ("description", "default"):
        if schema.get(key) is not None:
            value[key] = schema[key]
    if value.get("format") == "date-time":
        value = {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ],
            **{k: v for k, v in value.items() if k not in ("type", "format")},
        }
    value.pop("title", None)
    # An empty value (?action=) means "no such filter", as if the parameter were absent.
    described = {k: value.pop(k) for k in ("description", "default") if k in value}
    return {"anyOf": [value, {"type": "string", "maxLength": 0}], **described}


def _query_params(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = schemas[model.__name__]
    params = []
    for name, prop in schema.get("properties", {}).items():
        value = _query_value(prop)
        description = value.pop("description", "")
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": value}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _param(param: Param) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": param.name,
        "in": param.location,
        "required": param.required,
        "schema": param.schema,
    }
    if param.description:
        described["description"] = param.description
    return described


def _security(route: Route, http: HttpSettings) -> list[dict[str, list[str]]] | None:
    """Who may call: None when no key is needed (the operation then says ``[]``)."""
    if route.access == "admin":
        return [{ADMIN_SCHEME: []}]  # always: without admin keys nobody may
    if not http.api_keys or route.access == "open":
        return None
    if route.access == "probe" and not http.probes_need_key:
        return None
    if route.access == "scoring":
        return [{SCORING_SCHEME: []}]
    if route.access == "compliance":
        return [{COMPLIANCE_SCHEME: []}]
    if route.access == "admin_compliance":
        return [{ADMIN_SCHEME: []}, {COMPLIANCE_SCHEME: []}]
    return [{SCORING_SCHEME: []}, {COMPLIANCE_SCHEME: []}]


def _error(status: int) -> dict[str, Any]:
    return {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": _ref(ErrorResponse)}},
    }


def _operation_id(route: Route) -> str:
    """The view's name; where one view answers several paths, with the path's extension."""
    if sum(r.handler == route.handler for r in ROUTES) == 1:
        return route.handler
    return f"{route.handler}_{route.path.rsplit('.', 1)[-1]}"


def _operation(route: Route, http: HttpSettings, schemas: dict[str, Any]) -> dict[str, Any]:
    security = _security(route, http)
    statuses = set(route.errors) | ({401, 403} if security else set())
    responses: dict[str, Any] = {
        str(status): {"description": body.description, "content": _content(body)}
        for status, body in route.responses.items()
    }
    responses.update({str(status): _error(status) for status in sorted(statuses)})
    params = [_param(p) for p in route.params]
    if route.query is not None:
        params += _query_params(route.query, schemas)
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "security": security or [],
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": route.body.description,
            "content": _content(route.body),
        }
    return operation


def _limits(schemas: dict[str, Any], http: HttpSettings) -> dict[str, Any]:
    """The configured batch limit, stated where a client reads it."""
    limited = copy.deepcopy(schemas)
    for model, field in (("BatchRequest", "transactions"), ("LabelBatchRequest", "labels")):
        if model in limited:
            limited[model]["properties"][field]["maxItems"] = http.max_batch_size
    return limited


@cache
def openapi_document(http: HttpSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route, as this service is configured."""
    read, written = _models()
    _, defs = models_json_schema(
        [(m, "validation") for m in read] + [(m, "serialization") for m in written],
        ref_template=_REF,
        by_alias=True,
    )
    schemas = _limits(defs.get("$defs", {}), http)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, http, schemas)
    components: dict[str, Any] = {"schemas": schemas}
    admin_scheme = {
        ADMIN_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": http.api_key_header,
            "description": "An admin key (RISKSCORE_ADMIN_API_KEYS): changes of the allow "
            "and block lists, model versions and their promotion, reads.",
        }
    }
    components["securitySchemes"] = admin_scheme
    if http.api_keys:
        header = http.api_key_header
        components["securitySchemes"] = {
            SCORING_SCHEME: {
                "type": "apiKey",
                "in": "header",
                "name": header,
                "description": "A scoring key (RISKSCORE_API_KEYS): scores, labels, reads.",
            },
            COMPLIANCE_SCHEME: {
                "type": "apiKey",
                "in": "header",
                "name": header,
                "description": "A compliance key (RISKSCORE_COMPLIANCE_API_KEYS): searches, "
                "exports, reports, reads.",
            },
            **admin_scheme,
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "riskscore",
            "version": "1",
            "description": "Real-time payment risk scoring with exact SHAP reasons. Every "
            "error is {error: {type, message, fields?}}; a method a path does not take gets "
            "405 with an Allow header.",
        },
        "components": components,
        "paths": paths,
    }
