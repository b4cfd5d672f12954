"""Bytes on the wire to validated messages, and the error that says why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from features.card_numbers import CardNumberPolicy
from features.schema import InvalidJson, Label, Transaction, decode_model, validation_problems

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RecordError:
    """Why one record cannot be processed; it goes to the dead-letter topic, named so."""

    type: str
    message: str


def _fields(exc: ValidationError) -> str:
    return "; ".join(
        f"{path}: {message}" for path, message in validation_problems(exc, whole="value")
    )


def _decode(model: type[M], value: bytes | None, context: dict[str, Any] | None) -> M | RecordError:
    if value is None:
        return RecordError("invalid_json", "the record has no value")
    try:
        return decode_model(model, value, context if context is not None else REFUSE.context())
    except InvalidJson as exc:
        return RecordError("invalid_json", f"value is {exc}")
    except ValidationError as exc:
        return RecordError("validation_error", _fields(exc))


# The default everywhere: an id holding a card number is refused.
REFUSE = CardNumberPolicy()


def decode_transaction(
    value: bytes | None, context: dict[str, Any] | None = None
) -> Transaction | RecordError:
    """The record's transaction, or why it is not one. Its ids are screened by the
    card-number policy of ``context`` (``CardNumberPolicy.context()``; refuse without)."""
    return _decode(Transaction, value, context)


def decode_label(value: bytes | None, context: dict[str, Any] | None = None) -> Label | RecordError:
    """The record's label (its id screened as :func:`decode_transaction`'s), or why not."""
    return _decode(Label, value, context)
