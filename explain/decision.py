"""One decision, built once, in its final typed form; every transport shows a view of it.

The scorer builds one :class:`Decision` per payment. What leaves the service are views of
it, each encoded once: the ``/score`` response (and the identical Kafka ``decisions``
message) by :func:`response_json`, the audit row by ``explain/audit/compact.py``, the
compliance record by :func:`to_record`. Pieces shared by several views are encoded once and
spliced in: the reasons' JSON is made when the decision is built, and the response, the
message and the stored record all reuse it.

Why not a pydantic model as before: validating a freshly computed decision (~70 µs) and
serialising it twice (~50 µs) cost more than the model, the explanation and the features
together. Everything here is computed by our own code from validated inputs, so there is
nothing to validate; msgspec encodes these structs in about a microsecond.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from explain.records import (
    Action,
    DecisionRecord,
    FallbackReason,
    PastTransactionAttribution,
    SequenceExplanation,
    Stage,
)
from explain.schema import ExplanationSchema
from features.schema import Transaction
from models.rules.policy import Override

_ENCODER = msgspec.json.Encoder()


class Reasons(msgspec.Struct, frozen=True, gc=False):
    """A decision's reason codes: which features, their values as worded, and the JSON
    list the API shows (encoded once, reused by every view)."""

    indices: tuple[int, ...]  # into the explanation schema's features, largest first
    # Each value as worded ("12.5%", "3.0 d"); None for a record read back whole, whose
    # texts are in ``json`` already.
    value_texts: tuple[str, ...] | None
    json: bytes


class SequenceDecision(msgspec.Struct, frozen=True, gc=False):
    """What the second stage decided with, and the earlier payments it looked at.

    The earlier payments' occlusion effects are not computed on the request path: the
    ids are enough to rebuild the sequence exactly from their stored feature vectors
    (``explain/sequence_attribution.py``), so the attribution is computed when it is read.
    """

    model_version: str
    fast_score: float
    sequence_score: float
    combination: str
    earlier_ids: tuple[str, ...]  # the customer's earlier payments in the sequence, newest first


class Decision(msgspec.Struct, frozen=True, gc=False):
    """A decision and everything that explains it (see the module doc)."""

    transaction: Transaction
    request_sha256: str
    decided_at: datetime
    score: float
    action: Action
    stage: Stage
    fallback: bool
    fallback_reason: FallbackReason | None
    model_version: str
    reasons: Reasons
    schema: ExplanationSchema
    base_value: float
    raw_score: float
    values: np.ndarray  # (k,) feature values in the schema's order
    contributions: np.ndarray  # (k,) exact SHAP values, log-odds
    review_threshold: float
    decline_threshold: float
    timings_ms: dict[str, float]
    latency_ms: float
    sequence: SequenceDecision | None = None
    # Lists and rules that acted after the model (their reasons lead ``reasons.json``), and
    # the rule set in force when it was decided (None: no rules configured).
    overrides: tuple[Override, ...] = ()
    rules_version: str | None = None

    @property
    def transaction_id(self) -> str:
        return self.transaction.transaction_id

    def shap(self) -> dict[str, float]:
        return dict(zip(self.schema.feature_names, self.contributions.tolist(), strict=True))


# The /score body: field order as ScoreResponse (service/api_models.py) declares it, which
# is what /openapi.json documents; a test holds the two equal.
class _ScoreBody(msgspec.Struct):
    transaction_id: str
    score: float
    action: str
    stage: str
    fallback: bool
    fallback_reason: str | None
    reasons: msgspec.Raw
    model_version: str
    latency_ms: float
    decided_at: datetime


class _FullScoreBody(_ScoreBody):
    shap: dict[str, float]
    base_value: float
    raw_score: float


def response_json(decision: Decision, full: bool = False) -> bytes:
    """The ``/score`` answer (and, without ``full``, the Kafka decision message)."""
    body = (_FullScoreBody if full else _ScoreBody)(
        decision.transaction.transaction_id,
        decision.score,
        decision.action,
        decision.stage,
        decision.fallback,
        decision.fallback_reason,
        msgspec.Raw(decision.reasons.json),
        decision.model_version,
        decision.latency_ms,
        decision.decided_at,
        *((decision.shap(), decision.base_value, decision.raw_score) if full else ()),
    )
    return _ENCODER.encode(body)


def encode_json(value: Any) -> bytes:
    """msgspec's JSON encoding (structs, lists, dicts, datetimes), for pieces of views."""
    return _ENCODER.encode(value)


class _OverrideBody(msgspec.Struct):
    code: str
    value: float
    contribution: float
    direction: str
    text: str


def override_items(overrides: tuple[Override, ...]) -> list[dict[str, Any]]:
    """Overrides as :class:`~explain.records.Reason` fields: value 1 (the list or rule
    matched), contribution 0 (it is no part of the model's score)."""
    return [
        {
            "code": o.code,
            "value": 1.0,
            "contribution": 0.0,
            "direction": o.direction,
            "text": o.text,
        }
        for o in overrides
    ]


def with_overrides(reasons_json: bytes, overrides: tuple[Override, ...]) -> bytes:
    """The reasons' JSON list with the overrides' reasons first."""
    if not overrides:
        return reasons_json
    first = encode_json([_OverrideBody(o.code, 1.0, 0.0, o.direction, o.text) for o in overrides])
    if reasons_json == b"[]":
        return first
    return first[:-1] + b"," + reasons_json[1:]


def is_override_code(code: str) -> bool:
    return code.startswith(("LIST_", "RULE_"))


def reason_items(decision: Decision) -> list[dict[str, Any]]:
    """The reasons as :class:`~explain.records.Reason` fields."""
    if decision.reasons.value_texts is None:
        items: list[dict[str, Any]] = msgspec.json.decode(decision.reasons.json)
        return items
    schema = decision.schema
    out = override_items(decision.overrides)
    for i, value_text in zip(decision.reasons.indices, decision.reasons.value_texts, strict=True):
        contribution = float(decision.contributions[i])
        direction = schema.direction(contribution)
        out.append(
            {
                "code": schema.feature_names[i],
                "value": float(decision.values[i]),
                "contribution": contribution,
                "direction": direction,
                "text": schema.reason_text(i, value_text, direction),
            }
        )
    return out


def to_record(
    decision: Decision,
    attributions: list[PastTransactionAttribution] | None = None,
) -> DecisionRecord:
    """The compliance record (what ``GET /decisions/{id}`` shows), validated.

    ``attributions``: the second stage's per-payment effects, when computed; otherwise each
    earlier payment is listed with null fields (see :class:`SequenceDecision`).
    """
    sequence = None
    if decision.sequence is not None:
        s = decision.sequence
        sequence = SequenceExplanation(
            method="occlusion",
            model_version=s.model_version,
            fast_score=s.fast_score,
            sequence_score=s.sequence_score,
            combination=s.combination,
            attributions=attributions
            if attributions is not None
            else [
                {"transaction_id": i, "timestamp": None, "amount": None, "contribution": None}
                for i in s.earlier_ids
            ],
        )
    names = decision.schema.feature_names
    return DecisionRecord.model_validate(
        {
            "transaction": decision.transaction,
            "request_sha256": decision.request_sha256,
            "decided_at": decision.decided_at,
            "score": decision.score,
            "action": decision.action,
            "stage": decision.stage,
            "fallback": decision.fallback,
            "fallback_reason": decision.fallback_reason,
            "model_version": decision.model_version,
            "reasons": reason_items(decision),
            "explanation": {
                "method": decision.schema.method,
                "base_value": decision.base_value,
                "raw_score": decision.raw_score,
                "attributions": [
                    {"feature": name, "value": value, "contribution": c}
                    for name, value, c in zip(
                        names,
                        decision.values.tolist(),
                        decision.contributions.tolist(),
                        strict=True,
                    )
                ],
            },
            "thresholds": {
                "review": decision.review_threshold,
                "decline": decision.decline_threshold,
            },
            "sequence": sequence,
            "timings_ms": decision.timings_ms,
            "latency_ms": decision.latency_ms,
            "rules_version": decision.rules_version,
        }
    )


def from_record(record: DecisionRecord) -> Decision:
    """A stored record as a :class:`Decision`, so a replay is encoded like a fresh answer."""
    explanation = record.explanation
    attributions = explanation.attributions
    schema = ExplanationSchema.for_record(
        explanation.method, tuple(a["feature"] for a in attributions)
    )
    # The model's reasons are features; a list's or rule's reason is an override.
    indices = tuple(schema.index[r.code] for r in record.reasons if not is_override_code(r.code))
    overrides = tuple(
        Override(r.code, r.direction, r.text) for r in record.reasons if is_override_code(r.code)
    )
    reasons_json = encode_json([r.model_dump() for r in record.reasons])
    sequence = None
    if record.sequence is not None:
        s = record.sequence
        sequence = SequenceDecision(
            s.model_version,
            s.fast_score,
            s.sequence_score,
            s.combination,
            tuple(a["transaction_id"] for a in s.attributions),
        )
    return Decision(
        transaction=record.transaction,
        request_sha256=record.request_sha256,
        decided_at=record.decided_at,
        score=record.score,
        action=record.action,
        stage=record.stage,
        fallback=record.fallback,
        fallback_reason=record.fallback_reason,
        model_version=record.model_version,
        reasons=Reasons(indices, None, reasons_json),
        schema=schema,
        base_value=explanation.base_value,
        raw_score=explanation.raw_score,
        values=np.array([a["value"] for a in attributions], dtype=np.float64),
        contributions=np.array([a["contribution"] for a in attributions], dtype=np.float64),
        review_threshold=record.thresholds.review,
        decline_threshold=record.thresholds.decline,
        timings_ms=dict(record.timings_ms),
        latency_ms=record.latency_ms,
        sequence=sequence,
        overrides=overrides,
        rules_version=record.rules_version,
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
