"""``/openapi.json``: the API description, generated from the pydantic request/response models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from features.schema import Label, Transaction
from service.api_models import (
    BatchRequest,
    BatchResponse,
    DecisionDetail,
    ErrorResponse,
    Health,
    LabelBatchRequest,
    LabelBatchResponse,
    LabelResponse,
    Readiness,
    ScoreResponse,
)

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "Body is not valid JSON.",
    "401": "API key missing (when keys are configured).",
    "403": "API key not accepted.",
    "413": "Body or batch larger than configured.",
    "415": "Content type is not application/json.",
    "422": "Body does not match the schema; `fields` names each bad field.",
    "503": "Not ready, or the decision could not be recorded.",
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(ErrorResponse, _ERRORS[code]) for code in codes}


_EXPLAIN_PARAM = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["reasons", "full"], "default": "reasons"},
    "description": "full adds shap, base_value and raw_score (also as header X-Explain).",
}


@cache
def openapi_document(
    api_key_header: str = "X-API-Key", keys_required: bool = False
) -> dict[str, Any]:
    requests: list[type[BaseModel]] = [Transaction, BatchRequest, Label, LabelBatchRequest]
    responses: list[type[BaseModel]] = [
        ScoreResponse,
        BatchResponse,
        DecisionDetail,
        LabelResponse,
        LabelBatchResponse,
        ErrorResponse,
        Health,
        Readiness,
    ]
    _, schemas = models_json_schema(
        [(m, "validation") for m in requests] + [(m, "serialization") for m in responses],
        ref_template=_REF,
    )
    body_errors = ("400", "401", "403", "413", "415", "422", "503")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "riskscore",
            "version": "1",
            "description": "Real-time payment risk scoring with exact SHAP reasons.",
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": api_key_header}
            },
        },
        "paths": {
            "/score": {
                "post": {
                    "summary": "Score one transaction",
                    "parameters": [_EXPLAIN_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(Transaction)}},
                    },
                    "responses": {
                        "200": _json(
                            ScoreResponse, "The decision (or the earlier one for a retry)."
                        ),
                        "409": _json(ErrorResponse, "Same transaction_id, different body."),
                        **_errors(*body_errors),
                    },
                }
            },
            "/score/batch": {
                "post": {
                    "summary": "Score many transactions together",
                    "parameters": [_EXPLAIN_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(BatchRequest)}},
                    },
                    "responses": {
                        "200": _json(BatchResponse, "One result or item error per transaction."),
                        **_errors(*body_errors),
                    },
                }
            },
            "/decisions/{transaction_id}": {
                "get": {
                    "summary": "A stored decision with its full explanation",
                    "parameters": [
                        {
                            "name": "transaction_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(DecisionDetail, "The decision as recorded."),
                        "404": _json(ErrorResponse, "No decision for this id."),
                        **_errors("401", "403", "503"),
                    },
                }
            },
            "/labels": {
                "post": {
                    "summary": "Label feedback: one label, or {labels: [...]}",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [_ref(Label), _ref(LabelBatchRequest)]}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Outcome per label.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [_ref(LabelResponse), _ref(LabelBatchResponse)]
                                    }
                                }
                            },
                        },
                        "404": _json(ErrorResponse, "No decision for this transaction id."),
                        **_errors(*body_errors),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (no API key needed)",
                    "security": [],
                    "responses": {"200": _json(Health, "The process is serving.")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: model loaded, state rebuilt, audit store writable",
                    "responses": {
                        "200": _json(Readiness, "Ready to score."),
                        **_errors("401", "403", "503"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (riskscore_*)",
                    "responses": {"200": {"description": "Prometheus text format."}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1."}},
                }
            },
        },
        "security": [{"apiKey": []}] if keys_required else [],
    }
