"""Rows of either SQL store read back as records: the part of reading that does not
depend on the database (both keep the same columns and the same compact record)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from explain.audit import compact
from explain.audit.store import AuditStoreError
from explain.records import DecisionRecord
from explain.schema import ExplanationSchema

# What reading a decision back needs, in this order (see decision()): the columns the
# compact record is completed with, then the two forms of the record.
RECORD_COLUMNS = ", ".join(compact.COLUMNS) + ", record_json, record"
VECTOR_COLUMNS = "transaction_id, customer_id, event_time_ms, amount, record_json, record"


class RecordRows(ABC):
    """Turns stored rows into records; explanation schemas are read once and kept (they
    are immutable once stored, so shared by all threads)."""

    def __init__(self) -> None:
        self._schemas: dict[int, ExplanationSchema] = {}

    @abstractmethod
    def _schema_json(self, schema_id: int) -> str | None:
        """The stored JSON of an explanation schema, or None."""

    def _schema(self, schema_id: int) -> ExplanationSchema:
        schema = self._schemas.get(schema_id)
        if schema is None:
            text = self._schema_json(schema_id)
            if text is None:
                raise AuditStoreError(f"explanation schema {schema_id} is missing")
            schema = self._schemas[schema_id] = ExplanationSchema.from_json(text)
        return schema

    def _decision(self, row: Sequence[Any]) -> DecisionRecord:
        """A row of ``RECORD_COLUMNS`` as the full record, whichever form it was stored in."""
        try:
            n = len(compact.COLUMNS)
            if row[n]:
                return DecisionRecord.model_validate_json(row[n])
            record = compact.decode(bytes(row[n + 1]))
            columns = dict(zip(compact.COLUMNS, row[:n], strict=True))
            return compact.to_record(columns, record, self._schema(record.schema_id))
        except ValueError as exc:  # also pydantic's and msgspec's validation errors
            raise AuditStoreError(f"stored decision does not parse: {exc}") from exc

    def _feature_values(self, record_json: str, record: bytes | None) -> dict[str, float]:
        names, values = self._feature_array(record_json, record)
        return dict(zip(names, values.tolist(), strict=True))

    def _feature_array(
        self, record_json: str, record: bytes | None
    ) -> tuple[tuple[str, ...], np.ndarray]:
        """The feature names and values (float64, the very values decided) of a row."""
        try:
            if record_json:
                stored = json.loads(record_json)["explanation"]["attributions"]
                names = tuple(a["feature"] for a in stored)
                return names, np.array([float(a["value"]) for a in stored], dtype=np.float64)
            assert record is not None  # the schema's CHECK: one form or the other
            compact_record = compact.decode(bytes(record))
            schema = self._schema(compact_record.schema_id)
            return tuple(schema.feature_names), compact.feature_values(compact_record)
        except (ValueError, KeyError) as exc:
            raise AuditStoreError(f"stored feature values do not parse: {exc}") from exc
