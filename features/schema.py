"""The transaction and its label as they enter riskscore, over HTTP or Kafka; JSON decoding
and validation errors, the same for both transports.

Timestamps: ISO 8601. A timestamp without a UTC offset is taken as UTC, because the
service must order events from many sources on one clock and guessing a local zone
would silently shift windows. Window features use the absolute instant; calendar
features (weekend, night) use the wall-clock time as written, so a payment sent with
its local offset is judged by its local hour.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, NamedTuple, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from features.card_numbers import redact, screen_id

# Larger than any single card payment we expect; beyond it the value is almost surely a
# unit error (cents sent as units) and scoring it would only produce a confident nonsense.
MAX_AMOUNT = 1_000_000.0

# Clocks drift and time zones get mislabelled, but a payment from tomorrow+ is an error; one
# would also drag every window forward and age all other state out.
MAX_FUTURE_SKEW = timedelta(hours=24)


# Printable ids only: control characters (NUL above all) break logs, URLs and databases
# that stop strings at NUL; "." and ".." cannot be looked up in a URL path.
def _not_dots(value: str) -> str:
    if value in (".", ".."):
        raise ValueError("an id cannot be '.' or '..'")
    return value


# Every id passes the card-number policy of the validation's context (see
# features/card_numbers.py): refused, tokenised or let through before anything keeps it.
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_not_dots),
    AfterValidator(screen_id),
]


class Conversion(NamedTuple):
    """What a payment was before its amount was converted to the reference currency
    (``features/currency.py``): kept with its decision."""

    amount: float
    currency: str
    rate_version: str


class Transaction(BaseModel):
    """One payment to score."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    # Set on the copy whose amount is in the reference currency (features/currency.py);
    # None for a payment taken as it came (no rate table configured).
    _conversion: Conversion | None = PrivateAttr(default=None)

    transaction_id: Identifier
    timestamp: datetime = Field(
        description="ISO 8601 instant; without an offset it is taken as UTC. At most "
        f"{MAX_FUTURE_SKEW.total_seconds() / 3600:.0f} hours ahead of the service's clock "
        "(later is refused with 422: a payment cannot come from tomorrow); a UTC offset "
        "is whole minutes.",
    )
    customer_id: Identifier
    terminal_id: Identifier
    amount: float = Field(gt=0, le=MAX_AMOUNT, description="Amount in major currency units.")
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code; absent means RISKSCORE_CURRENCY. Accepted: that currency,"
        " or one with a rate in RISKSCORE_CURRENCY_RATES (others are refused with 422"
        " unsupported_currency).",
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: object) -> datetime:
        # Strict mode refuses strings for datetime; JSON carries ISO strings, so parse here.
        if isinstance(value, datetime):
            return _not_in_future(value)
        if not isinstance(value, str):
            raise ValueError("timestamp must be an ISO 8601 string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"timestamp is not ISO 8601: {value!r}") from exc
        return _not_in_future(parsed)

    @field_validator("amount", mode="before")
    @classmethod
    def _finite_amount(cls, value: object) -> object:
        # Strict mode would refuse an int like 12; JSON writers often emit whole amounts so.
        if isinstance(value, bool):
            raise ValueError("amount must be a number")
        if isinstance(value, int):
            try:
                value = float(value)
            except OverflowError:
                raise ValueError("amount is far too large") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("amount must be a finite number")
        return value

    # Cached: the scoring path reads these several times per payment, and each costs a few
    # microseconds of datetime arithmetic (the model is frozen, so they cannot go stale).
    @cached_property
    def epoch_ms(self) -> int:
        """Event time in integer milliseconds since the Unix epoch (the engines' clock)."""
        return datetime_to_epoch_ms(self.timestamp)

    @cached_property
    def local_epoch_ms(self) -> int:
        """Wall-clock time as written, as if it were UTC: used for calendar features."""
        ts = self.timestamp
        offset = ts.utcoffset()
        shift = 0 if offset is None else int(offset.total_seconds() * 1000)
        return self.epoch_ms + shift

    @cached_property
    def canonical_json(self) -> bytes:
        """The transaction as canonical JSON: equal for equal content, whatever the key
        order or spacing of the request that carried it. Stored with every decision."""
        return self.model_dump_json().encode()

    @property
    def conversion(self) -> Conversion | None:
        """The payment as received, when this is its converted copy."""
        return self._conversion

    @cached_property
    def digest(self) -> str:
        """SHA-256 of :attr:`canonical_json`: a retry with the same id must match it."""
        return hashlib.sha256(self.canonical_json).hexdigest()


class Label(BaseModel):
    """The known outcome of a decided payment: the body of ``POST /labels`` and a record
    on the ``labels`` topic."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction_id: Annotated[str, AfterValidator(screen_id)] = Field(min_length=1, max_length=128)
    is_fraud: bool
    labelled_at: AwareDatetime | None = Field(
        default=None,
        strict=False,  # JSON carries times as ISO strings
        description="ISO 8601 with offset: when the label became known (default: receipt).",
    )

    def as_tuple(self) -> tuple[str, bool, datetime | None]:
        return self.transaction_id, self.is_fraud, self.labelled_at


def _not_in_future(ts: datetime) -> datetime:
    offset = ts.utcoffset()
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        # ISO 8601 allows "+02:00:30", but every zone in use is whole minutes, and the
        # canonical JSON (what a retry is matched against and what is stored) keeps hours
        # and minutes only: the seconds would silently move the payment's instant.
        raise ValueError(f"timestamp {ts.isoformat()} has a UTC offset that is not whole minutes")
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if aware - datetime.now(UTC) > MAX_FUTURE_SKEW:
        raise ValueError(f"timestamp {ts.isoformat()} is more than {MAX_FUTURE_SKEW} in the future")
    return ts


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_to_epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class InvalidJson(ValueError):
    """Bytes that are not a JSON document; the message says where and why."""


M = TypeVar("M", bound=BaseModel)


def loads(data: bytes | str) -> object:
    """The standard library's JSON parser, its failures as :class:`InvalidJson`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidJson("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError, JSONDecodeError, huge integers
        raise InvalidJson(f"not valid JSON: {exc}") from None


def decode_model(model: type[M], data: bytes, context: dict[str, Any] | None = None) -> M:
    """Validate JSON bytes as ``model``, for every transport (HTTP bodies, Kafka values).

    Valid input takes pydantic's parser straight from the bytes (one pass, ~5 µs for a
    transaction instead of ~11 through ``json.loads``). Anything it refuses goes through
    the standard library's parser and Python-mode validation, so that what a client is
    told about bad input (and what is accepted at the edges, e.g. a UTF-16 body) stays
    exactly as it was: raises :class:`InvalidJson` or pydantic's ``ValidationError``.
    pydantic's JSON mode is at least as strict as that path (tested), so the fast path
    never accepts what the slow one would refuse. ``context`` carries the card-number
    policy (``CardNumberPolicy.context()``).
    """
    try:
        return model.model_validate_json(data, context=context)
    except ValidationError:
        pass
    return model.model_validate(loads(data), context=context)


def validation_problems(
    exc: ValidationError, prefix: str = "", whole: str = "body"
) -> list[tuple[str, str]]:
    """Each problem of a failed validation as (dotted field path, message), in order.

    ``prefix`` goes before every path (an item of a batch: ``"transactions.3."``); a
    problem of the document itself is named ``whole``.

    >>> try:
    ...     Label.model_validate({"transaction_id": "", "is_fraud": True})
    ... except ValidationError as exc:
    ...     validation_problems(exc, prefix="labels.0.")
    [('labels.0.transaction_id', 'String should have at least 1 character')]
    """
    # A path or message may quote what was sent (an unknown field's name): never a card
    # number, which would otherwise travel in a 422 body or a dead letter's headers.
    return [
        (
            redact((prefix + ".".join(str(p) for p in err["loc"])).rstrip(".") or whole),
            redact(_plain(err["msg"])),
        )
        for err in exc.errors(include_url=False)
    ]


def _plain(message: str) -> str:
    """The message without pydantic's "Value error, " (or "Assertion failed, ") in front
    of the words our own validators chose."""
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
