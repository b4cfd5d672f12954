"""The service's error types: each carries its HTTP status and a stable ``type`` name.

One middleware (``service/middleware.py``) renders every one of them as
``{"error": {"type", "message", "fields"?}}``; the Kafka path logs the same types.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import ValidationError

from features.schema import validation_problems


class ServiceError(Exception):
    """Base class: a failure with a client-facing message and HTTP status."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    headers: dict[str, str] | None = None  # sent with the error answer (e.g. Retry-After)

    def __init__(self, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidJson(ServiceError):
    status = 400
    type = "invalid_json"


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    type = "forbidden"


class NotFound(ServiceError):
    status = 404
    type = "not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    type = "method_not_allowed"


class IdempotencyConflict(ServiceError):
    status = 409
    type = "idempotency_conflict"


class Overloaded(ServiceError):
    """Refused before anything was scored or recorded (predicted wait over the budget, or
    the API key over its rate): retry after ``Retry-After`` seconds."""

    status = 429
    type = "overloaded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class RateLimited(Overloaded):
    """The API key is over its configured rate (RISKSCORE_API_KEY_RATES)."""

    type = "rate_limited"


class PayloadTooLarge(ServiceError):
    status = 413
    type = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    type = "unsupported_media_type"


class InvalidInput(ServiceError):
    """The body is JSON but not a valid request: ``fields`` names each bad field."""

    status = 422
    type = "validation_error"

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> InvalidInput:
        fields = [
            {"field": field, "message": message}
            for field, message in validation_problems(exc, prefix)
        ]
        names = ", ".join(dict.fromkeys(f["field"] for f in fields))
        return cls(f"invalid request: {names}", fields)


class NotReady(ServiceError):
    status = 503
    type = "not_ready"


class FeatureStateDown(ServiceError):
    """The shared feature state (Redis) could not be reached: nothing was decided; retry."""

    status = 503
    type = "feature_state_unavailable"


class PdfNotAvailable(ServiceError):
    """This installation cannot lay out PDFs (WeasyPrint's system libraries are missing);
    the HTML page still works."""

    status = 501
    type = "pdf_unavailable"


class AuditUnavailable(ServiceError):
    """The decision could not be recorded, so it is not given: retry with the same id."""

    status = 503
    type = "audit_unavailable"


class UnsupportedCurrency(InvalidInput):
    """A payment in a currency riskscore cannot put on the same scale as the others (no
    rate for it, or no rate table and not the configured currency): 422 naming it."""

    type = "unsupported_currency"

    def __init__(self, message: str) -> None:
        super().__init__(message, [{"field": "currency", "message": message}])
