"""The stored form of a challenger row: what the decision it follows does not already say,
in one small binary value (a MessagePack array, as a decision's ``compact.py`` record).

The challenger scored the decision's own feature vector, so the feature names (the
decision's explanation schema) and values (its record) are not stored again: a row holds
the explainer's method, base value and raw score, the exact SHAP contributions as raw
little-endian float64 (8 bytes each, bit for bit), and its reasons as feature positions
with each value as worded — their texts are rebuilt from the decision's schema when read.
About 0.25 KB a row (253 bytes on average, 24 features) against ~3.3 KB as JSON. Reading
gives the very text the shadow wrote before (the same encoders build it), so
:class:`ChallengerScore` is unchanged.

A row given as text (a :class:`ChallengerScore` submitted whole, or a challenger whose
explanation schema is not the decision's) keeps that text in the record instead: always
exact, only larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from explain.audit.challenger_log import ChallengerScore
from explain.decision import encode_json
from explain.reasons import ReasonBody
from explain.records import Action
from explain.schema import ExplanationSchema

FORMAT = 1
_F8 = np.dtype("<f8")
# The columns both stores insert and read, in this order.
COLUMNS = (
    "transaction_id, model_version, event_time_ms, score, action, review_threshold,"
    " decline_threshold, record, sequence_score, scored_at_ms"
)


class _Attribution(msgspec.Struct):
    feature: str
    value: float
    contribution: float


class _Explanation(msgspec.Struct):
    """A decision's explanation's JSON shape (explain.records.Explanation)."""

    method: str
    base_value: float
    raw_score: float
    attributions: list[_Attribution]


class ChallengerRecord(msgspec.Struct, array_like=True, frozen=True):
    """What a row holds besides its columns (positions, not names, on disk)."""

    format: int
    method: str
    base_value: float
    raw_score: float
    contributions: bytes  # float64, little-endian, the decision's schema order
    reason_indices: list[int]
    reason_values: list[str]
    reasons_json: str | None = None  # the row as text, when not given compact
    explanation_json: str | None = None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ChallengerRecord)
_JSON = msgspec.json.Encoder()


def explanation_json(
    method: str, base_value: float, raw_score: float, names: Sequence[str], values: list[float],
    contributions: list[float],
) -> str:  # fmt: skip
    """The explanation as a decision's ``explanation`` JSON (``explain.records``)."""
    attributions = [
        _Attribution(n, v, c) for n, v, c in zip(names, values, contributions, strict=True)
    ]
    return _JSON.encode(_Explanation(method, base_value, raw_score, attributions)).decode()


def reasons_json(
    schema: ExplanationSchema,
    indices: Sequence[int],
    value_texts: Sequence[str],
    values: list[float],
    contributions: list[float],
) -> str:
    """The reasons as ``explain.reasons`` words them (their text from ``schema``)."""
    names = schema.feature_names
    bodies = []
    for i, text in zip(indices, value_texts, strict=True):
        direction = schema.direction(contributions[i])
        bodies.append(
            ReasonBody(
                names[i],
                values[i],
                contributions[i],
                direction,
                schema.reason_text(i, text, direction),
            )
        )
    return encode_json(bodies).decode()


def encode_compact(
    method: str,
    base_value: float,
    raw_score: float,
    contributions: np.ndarray,
    reason_indices: Sequence[int],
    reason_values: Sequence[str],
) -> bytes:
    return _ENCODER.encode(
        ChallengerRecord(
            FORMAT,
            method,
            base_value,
            raw_score,
            np.ascontiguousarray(contributions, dtype=_F8).tobytes(),
            list(reason_indices),
            list(reason_values),
        )
    )


def encode_texts(reasons_json: str, explanation_json: str) -> bytes:
    """A row given as text: kept as it is."""
    return _ENCODER.encode(
        ChallengerRecord(FORMAT, "", 0.0, 0.0, b"", [], [], reasons_json, explanation_json)
    )


def encode_text(score: ChallengerScore) -> bytes:
    return encode_texts(score.reasons_json, score.explanation_json)


def decode(blob: bytes) -> ChallengerRecord:
    record = _DECODER.decode(blob)
    if record.format != FORMAT:
        raise ValueError(f"challenger record format {record.format} is not known here")
    return record


def contributions_of(record: ChallengerRecord) -> np.ndarray:
    return np.frombuffer(record.contributions, dtype=_F8)


def to_score(
    row: Sequence[Any], values: np.ndarray | None, schema: ExplanationSchema | None
) -> ChallengerScore:
    """The row (``COLUMNS``) as written, with its decision's feature values and schema
    (None for a row kept as text: it does not need them)."""
    tid, version, event_ms, score, action, review, decline, blob, seq, at = row
    record = decode(bytes(blob))
    reasons, explanation = record.reasons_json, record.explanation_json
    if reasons is None or explanation is None:
        if values is None or schema is None:
            raise ValueError(f"challenger row of {tid!r} has no decision to complete it")
        vals = values.tolist()
        contributions = contributions_of(record).tolist()
        reasons = reasons_json(
            schema, record.reason_indices, record.reason_values, vals, contributions
        )
        explanation = explanation_json(
            record.method,
            record.base_value,
            record.raw_score,
            schema.feature_names,
            vals,
            contributions,
        )
    return ChallengerScore(
        tid,
        version,
        int(event_ms),
        float(score),
        _action(action),
        float(review),
        float(decline),
        reasons,
        explanation,
        None if seq is None else float(seq),
        int(at),
    )


def _action(text: str) -> Action:
    if text not in ("approve", "review", "decline"):
        raise ValueError(f"challenger action {text!r} is not known")
    return text  # type: ignore[return-value]
