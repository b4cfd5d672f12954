"""Bytes on the wire to validated messages, and the error that says why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from features.schema import InvalidJson, Transaction, decode_model

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RecordError:
    """Why one record cannot be processed; it goes to the dead-letter topic, named so."""

    type: str
    message: str


class LabelMessage(BaseModel):
    """A label on the ``labels`` topic (the body of ``POST /labels``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction_id: str = Field(min_length=1, max_length=128)
    is_fraud: bool
    labelled_at: AwareDatetime | None = Field(default=None, strict=False)

    def as_tuple(self) -> tuple[str, bool, datetime | None]:
        return self.transaction_id, self.is_fraud, self.labelled_at


def _fields(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


def _decode(model: type[M], value: bytes | None) -> M | RecordError:
    if value is None:
        return RecordError("invalid_json", "the record has no value")
    try:
        return decode_model(model, value)
    except InvalidJson as exc:
        return RecordError("invalid_json", f"value is {exc}")
    except ValidationError as exc:
        return RecordError("validation_error", _fields(exc))


def decode_transaction(value: bytes | None) -> Transaction | RecordError:
    """The record's transaction, or why it is not one."""
    return _decode(Transaction, value)


def decode_label(value: bytes | None) -> LabelMessage | RecordError:
    """The record's label, or why it is not one."""
    return _decode(LabelMessage, value)
