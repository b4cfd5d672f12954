"""Every rejected input names its field; accepted timestamps land on one clock."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from features.schema import MAX_AMOUNT, Transaction, datetime_to_epoch_ms

VALID = {
    "transaction_id": "tx-1",
    "timestamp": "2024-03-02T23:30:00+01:00",
    "customer_id": "c-1",
    "terminal_id": "t-1",
    "amount": 42.5,
    "currency": "EUR",
}


def _fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.errors()}


def test_valid_transaction_parses_from_json() -> None:
    tx = Transaction.model_validate_json(json.dumps(VALID))
    assert tx.amount == 42.5
    assert tx.timestamp.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", -1.0),
        ("amount", 0.0),
        ("amount", MAX_AMOUNT * 10),
        ("amount", "12.0"),
        ("amount", True),
        ("timestamp", "yesterday"),
        ("timestamp", 1700000000),
        ("transaction_id", ""),
        ("customer_id", 7),
        ("currency", "euro"),
    ],
)
def test_bad_field_is_named(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate({**VALID, field: value})
    assert field in _fields(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_amount_is_rejected(value: float) -> None:
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate({**VALID, "amount": value})
    assert "amount" in _fields(info.value)


def test_non_finite_amount_in_json_is_rejected() -> None:
    # Python's json module writes NaN; a client library may too.
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate_json(json.dumps({**VALID, "amount": math.nan}))
    assert "amount" in _fields(info.value)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate({**VALID, "card_number": "4111"})
    assert "card_number" in _fields(info.value)


def test_missing_field_is_named() -> None:
    body = {k: v for k, v in VALID.items() if k != "terminal_id"}
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate(body)
    assert "terminal_id" in _fields(info.value)


def test_whole_number_amount_is_accepted() -> None:
    assert Transaction.model_validate({**VALID, "amount": 12}).amount == 12.0


def test_naive_timestamp_is_taken_as_utc() -> None:
    naive = Transaction.model_validate({**VALID, "timestamp": "2024-03-02T23:30:00"})
    utc = Transaction.model_validate({**VALID, "timestamp": "2024-03-02T23:30:00+00:00"})
    assert naive.epoch_ms == utc.epoch_ms
    assert naive.epoch_ms == int(datetime(2024, 3, 2, 23, 30, tzinfo=UTC).timestamp() * 1000)


def test_offset_shifts_absolute_time_but_not_wall_clock() -> None:
    tx = Transaction.model_validate(VALID)  # 23:30 at +01:00 is 22:30 UTC
    assert tx.epoch_ms == datetime_to_epoch_ms(datetime(2024, 3, 2, 22, 30, tzinfo=UTC))
    assert tx.local_epoch_ms - tx.epoch_ms == 3_600_000


def test_epoch_ms_keeps_milliseconds() -> None:
    ts = datetime(2024, 1, 1, 0, 0, 0, 123_999, tzinfo=timezone(timedelta(hours=-5)))
    assert datetime_to_epoch_ms(ts) % 1000 == 123


def test_timestamp_far_in_the_future_is_rejected() -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate({**VALID, "timestamp": future})
    assert "timestamp" in _fields(info.value)


def test_timestamp_within_clock_skew_is_accepted() -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert Transaction.model_validate({**VALID, "timestamp": soon}).epoch_ms > 0
