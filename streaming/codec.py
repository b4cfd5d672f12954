"""Bytes on the wire to validated messages, and the error that says why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

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


def _decode(model: type[M], value: bytes | None, policy: CardNumberPolicy) -> M | RecordError:
    if value is None:
        return RecordError("invalid_json", "the record has no value")
    try:
        return decode_model(model, value, policy.context())
    except InvalidJson as exc:
        return RecordError("invalid_json", f"value is {exc}")
    except ValidationError as exc:
        return RecordError("validation_error", _fields(exc))


# The default everywhere: an id holding a card number is refused.
REFUSE = CardNumberPolicy()


def decode_transaction(
    value: bytes | None, policy: CardNumberPolicy = REFUSE
) -> Transaction | RecordError:
    """The record's transaction (its ids screened by ``policy``), or why it is not one."""
    return _decode(Transaction, value, policy)


def decode_label(value: bytes | None, policy: CardNumberPolicy = REFUSE) -> Label | RecordError:
    """The record's label (its id screened by ``policy``), or why it is not one."""
    return _decode(Label, value, policy)
