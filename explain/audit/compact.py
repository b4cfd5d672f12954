"""The compact stored form of a decision: what is not a column, in one small binary value.

A stored decision is its columns (transaction id, times, customer, terminal, amount,
action, stage, score, model version, fallback: what queries filter and sort on) plus this
record: a MessagePack array (field names are positions, not text) with the feature values
and exact SHAP contributions as raw float64 (bit for bit, 8 bytes each), and the reasons
as feature positions with each value as worded. Everything shared by all decisions of a
model — feature names, descriptions, the reason template, the explainer's name — is one
:class:`~explain.schema.ExplanationSchema` row, referred to by id.

Every field of the full record is kept and reads back equal (tested on thousands of
decisions): the transaction's canonical JSON (so its SHA-256 still matches), decision time
to the microsecond, timings and latency to the 0.1 µs they are rounded to, and each
reason's text, rebuilt from the stored schema with the stored words for its value.
About 0.9 KB a decision in SQLite, indexes included, against ~4.2 KB as JSON (about
1.0 KB with the report columns and index of schema version 4).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np

from explain.decision import Decision, override_items
from explain.records import DecisionRecord, PastTransactionAttribution
from explain.schema import ExplanationSchema
from features.schema import Transaction
from models.rules.policy import Override

FORMAT = 1
# The columns a compact record is completed with when read (to_record), in this order.
COLUMNS = (
    "transaction_id",
    "request_sha256",
    "customer_id",
    "terminal_id",
    "amount",
    "action",
    "stage",
    "score",
    "model_version",
    "fallback",
)
# Timings and latency are rounded to 4 decimals of a millisecond when measured: stored as
# integers of that unit they read back as the very same floats.
TICKS_PER_MS = 10_000
TIMING_KEYS = ("features", "model", "explain", "sequence")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_F8 = np.dtype("<f8")


class CompactSequence(msgspec.Struct, array_like=True, frozen=True):
    model_version: str
    fast_score: float
    sequence_score: float
    combination: str
    earlier_ids: list[str]  # newest first


class _CompactModelRecord(msgspec.Struct, array_like=True, frozen=True):
    """What a decision row holds besides its columns (positions, not names, on disk)."""

    format: int
    schema_id: int
    timestamp: str  # the transaction's timestamp as in its canonical JSON
    currency: str | None
    decided_at_us: int
    fallback_reason: str | None
    reason_indices: list[int]
    reason_values: list[str]
    base_value: float
    raw_score: float
    values: bytes  # float64, little-endian, schema order
    contributions: bytes
    review: float
    decline: float
    timings: list[int | None]  # TIMING_KEYS order, None when not measured
    latency: int
    sequence: CompactSequence | None


class CompactRecord(_CompactModelRecord, array_like=True, frozen=True):
    """The record with what acted after the model: lists and rules that overrode it and
    the rule set in force. A decision without either is written as before (two fields
    shorter), so records without lists and rules are byte for byte those of earlier code;
    reading gives the defaults for them."""

    overrides: list[Override] | None = None
    rules_version: str | None = None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CompactRecord)


def _ticks(ms: float) -> int:
    return round(ms * TICKS_PER_MS)


def _ms(ticks: int) -> float:
    return ticks / TICKS_PER_MS


def timestamp_text(tx: Transaction) -> str:
    """The timestamp exactly as the transaction's canonical JSON writes it."""
    data: str = msgspec.json.decode(tx.canonical_json)["timestamp"]
    return data


def encode(decision: Decision, schema_id: int) -> bytes:
    """The decision's compact record (its schema stored separately as ``schema_id``)."""
    reasons = decision.reasons
    if reasons.value_texts is None:
        raise ValueError("a decision read back whole cannot be stored again in compact form")
    extra = set(decision.timings_ms) - set(TIMING_KEYS)
    if extra:
        raise ValueError(f"timings {sorted(extra)} have no place in the compact record")
    tx = decision.transaction
    s = decision.sequence
    delta = decision.decided_at - _EPOCH
    policy = (
        (list(decision.overrides) or None, decision.rules_version)
        if decision.overrides or decision.rules_version is not None
        else ()
    )
    return _ENCODER.encode(
        (CompactRecord if policy else _CompactModelRecord)(
            FORMAT,
            schema_id,
            timestamp_text(tx),
            tx.currency,
            (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds,
            decision.fallback_reason,
            list(reasons.indices),
            list(reasons.value_texts),
            decision.base_value,
            decision.raw_score,
            np.ascontiguousarray(decision.values, dtype=_F8).tobytes(),
            np.ascontiguousarray(decision.contributions, dtype=_F8).tobytes(),
            decision.review_threshold,
            decision.decline_threshold,
            [
                None if (ms := decision.timings_ms.get(key)) is None else _ticks(ms)
                for key in TIMING_KEYS
            ],
            _ticks(decision.latency_ms),
            None
            if s is None
            else CompactSequence(
                s.model_version, s.fast_score, s.sequence_score, s.combination, list(s.earlier_ids)
            ),
            *policy,
        )
    )


def decode(blob: bytes) -> CompactRecord:
    record = _DECODER.decode(blob)
    if record.format != FORMAT:
        raise ValueError(f"compact record format {record.format} is not known here")
    return record


def feature_values(record: CompactRecord) -> np.ndarray:
    return np.frombuffer(record.values, dtype=_F8)


def to_record(
    columns: dict[str, Any],
    record: CompactRecord,
    schema: ExplanationSchema,
    attributions: list[PastTransactionAttribution] | None = None,
) -> DecisionRecord:
    """The full compliance record from a row's :data:`COLUMNS` and its compact record."""
    values = np.frombuffer(record.values, dtype=_F8).tolist()
    contributions = np.frombuffer(record.contributions, dtype=_F8).tolist()
    names = schema.feature_names
    reasons = override_items(tuple(record.overrides or ()))
    for i, value_text in zip(record.reason_indices, record.reason_values, strict=True):
        direction = schema.direction(contributions[i])
        reasons.append(
            {
                "code": names[i],
                "value": values[i],
                "contribution": contributions[i],
                "direction": direction,
                "text": schema.reason_text(i, value_text, direction),
            }
        )
    transaction = Transaction.model_construct(
        transaction_id=columns["transaction_id"],
        timestamp=datetime.fromisoformat(record.timestamp),
        customer_id=columns["customer_id"],
        terminal_id=columns["terminal_id"],
        amount=float(columns["amount"]),
        currency=record.currency,
    )
    s = record.sequence
    sequence = None
    if s is not None:
        sequence = {
            "method": "occlusion",
            "model_version": s.model_version,
            "fast_score": s.fast_score,
            "sequence_score": s.sequence_score,
            "combination": s.combination,
            "attributions": attributions
            if attributions is not None
            else [
                {"transaction_id": i, "timestamp": None, "amount": None, "contribution": None}
                for i in s.earlier_ids
            ],
        }
    return DecisionRecord.model_validate(
        {
            "transaction": transaction,
            "request_sha256": columns["request_sha256"],
            "decided_at": _EPOCH + timedelta(microseconds=record.decided_at_us),
            "score": columns["score"],
            "action": columns["action"],
            "stage": columns["stage"],
            "fallback": bool(columns["fallback"]),
            "fallback_reason": record.fallback_reason,
            "model_version": columns["model_version"],
            "reasons": reasons,
            "explanation": {
                "method": schema.method,
                "base_value": record.base_value,
                "raw_score": record.raw_score,
                "attributions": [
                    {"feature": name, "value": v, "contribution": c}
                    for name, v, c in zip(names, values, contributions, strict=True)
                ],
            },
            "thresholds": {"review": record.review, "decline": record.decline},
            "sequence": sequence,
            "timings_ms": {
                key: _ms(ticks)
                for key, ticks in zip(TIMING_KEYS, record.timings, strict=True)
                if ticks is not None
            },
            "latency_ms": _ms(record.latency),
            "rules_version": record.rules_version,
        }
    )
