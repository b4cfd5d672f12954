"""Request and response bodies of the HTTP API; ``/openapi.json`` is generated from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
)

from explain.records import (
    Action,
    DecisionRecord,
    FallbackReason,
    LabelOutcomeName,
    LabelRecord,
    Reason,
    Stage,
)


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the bad field ('body' for the whole body).")
    message: str


class ErrorBody(BaseModel):
    type: str = Field(description="Stable error type, e.g. validation_error, payload_too_large.")
    message: str
    fields: list[FieldError] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ScoreResponse(BaseModel):
    """The decision for one transaction."""

    transaction_id: str
    score: float = Field(description="Fraud probability.")
    action: Action
    stage: Stage = Field(description="Which model decided: 'fast' or 'sequence'.")
    fallback: bool = Field(description="True when the sequence stage was wanted but skipped.")
    fallback_reason: FallbackReason | None = Field(
        description="Why the sequence stage did not decide (budget, timeout, error), else null."
    )
    reasons: list[Reason] = Field(description="Top reason codes, largest contribution first.")
    model_version: str
    latency_ms: float = Field(description="Milliseconds the service took to decide.")
    decided_at: AwareDatetime
    shap: dict[str, float] | None = Field(
        default=None, description="With explain=full: every feature's SHAP value (log-odds)."
    )
    base_value: float | None = Field(default=None, description="With explain=full.")
    raw_score: float | None = Field(
        default=None, description="With explain=full: log-odds; base_value + sum(shap)."
    )


class BatchRequest(BaseModel):
    """Transactions to score together; each is validated on its own."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[Any] = Field(min_length=1, description="Transactions (see /score).")


class BatchItemError(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    transaction_id: str | None = None
    error: ErrorBody


class BatchResponse(BaseModel):
    results: list[ScoreResponse | BatchItemError] = Field(
        description="One entry per request item, in request order."
    )


class LabelBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[Any] = Field(min_length=1, description="Labels (see Label).")


class LabelResponse(BaseModel):
    transaction_id: str
    outcome: LabelOutcomeName = Field(
        description="applied: feature state changed; unchanged: already known; recorded: "
        "stored for reports, too old for any feature window."
    )


class LabelBatchResponse(BaseModel):
    results: list[LabelResponse | BatchItemError]


class DecisionDetail(DecisionRecord):
    """A stored decision with its full explanation, and the labels received for it."""

    labels: list[LabelRecord] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str


class DecisionPage(BaseModel):
    """One page of ``GET /decisions``."""

    decisions: list[DecisionDetail] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class ModelVersionInfo(BaseModel):
    """One model version as its manifests describe it."""

    version: str = Field(description="The fast model's model_version, as decisions record it.")
    directory: str = Field(description="Its directory in the model directory.")
    created_at: str
    sha256: dict[str, str] = Field(description="SHA-256 of every file of the fast model.")
    training_window: dict[str, str]
    validation_window: dict[str, str] | None
    validation_metrics: dict[str, float | None]
    thresholds: dict[str, float] = Field(description="review and decline cut points.")
    sequence: dict[str, Any] | None = Field(
        description="Its sequence artifact (version, the fast model it was fitted for, "
        "whether that is this one, SHA-256s), or null when it has none."
    )
    champion: bool | None = Field(default=None, description="In versions: whether it is served.")


class ShadowCounts(BaseModel):
    """The shadow challenger's queue and counters in this process (since it started)."""

    queued: int = Field(description="Decided payments waiting for the challenger now.")
    scored: int = Field(description="Payments it scored whose rows are durable.")
    dropped: int = Field(
        description="Payments it did not score or store (riskscore_challenger_dropped_total "
        "says why)."
    )
    queue_capacity: int = Field(description="RISKSCORE_CHALLENGER_QUEUE_SIZE.")


class ChallengerInfo(ModelVersionInfo):
    """The version scoring in the shadow, and how its shadow is doing."""

    shadow: ShadowCounts


class ModelsResponse(BaseModel):
    champion: ModelVersionInfo = Field(description="The version this process serves.")
    champion_file: str | None = Field(
        default=None,
        description="The version the champion file names, which every process sharing the "
        "model directory follows; differs from champion.version while this process has "
        "not (yet) loaded it. Null with a single artifact.",
    )
    challenger: ChallengerInfo | None = Field(
        description="The version scoring in the shadow of the champion, with its shadow's "
        "counters; null when there is none."
    )
    versions: list[ModelVersionInfo] = Field(description="Every version, oldest first.")
