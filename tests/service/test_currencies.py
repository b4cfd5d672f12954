"""Amounts are put in one currency before features: with a rate table they are converted
(and the record keeps the payment as received); without one, only the configured currency
is accepted. Over HTTP here; the Kafka path is in tests/streaming/test_stream_currencies.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.service.conftest import ClientFactory

RATES = {"reference": "EUR", "version": "2026-12-01", "rates": {"USD": 0.5, "JPY": 0.0062}}


@pytest.fixture
def rates(tmp_path: Path) -> Path:
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(RATES))
    return path


def _features(record: dict[str, Any]) -> dict[str, float]:
    return {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}


def _payment(transaction: dict, n: int, **changes: Any) -> dict:
    """The fixed payment as the n-th of its customer; ``currency=None`` leaves it out."""
    body = {
        **transaction,
        "transaction_id": f"tx-{n}",
        "timestamp": f"2025-06-02T14:0{n}:00+02:00",
        **changes,
    }
    if body.get("currency") is None:
        del body["currency"]
    return body


async def test_without_a_rate_table_only_the_configured_currency_is_accepted(
    client: Any, transaction: dict
) -> None:
    refused = await client.post("/score", json=_payment(transaction, 1, currency="USD"))
    assert refused.status == 422
    error = (await refused.json())["error"]
    assert error["type"] == "unsupported_currency"
    assert "'USD'" in error["message"] and "RISKSCORE_CURRENCY_RATES" in error["message"]
    assert error["fields"][0]["field"] == "currency"
    for n, currency in enumerate(("EUR", None), start=2):
        body = _payment(transaction, n, currency=currency)
        assert (await client.post("/score", json=body)).status == 200
    # Nothing of the refused payment reached the feature state or the store.
    assert (await client.get("/decisions/tx-1")).status == 404


async def test_the_configured_currency_is_a_setting(
    make_client: ClientFactory, transaction: dict
) -> None:
    client = await make_client(currency="USD")
    assert (
        await client.post("/score", json=_payment(transaction, 1, currency="USD"))
    ).status == 200
    assert (await client.post("/score", json=_payment(transaction, 2, currency=None))).status == 200
    euros = await client.post("/score", json=_payment(transaction, 3, currency="EUR"))
    assert euros.status == 422


async def test_amounts_are_converted_before_features_and_the_record_keeps_both(
    make_client: ClientFactory, transaction: dict, rates: Path, tmp_path: Path
) -> None:
    client = await make_client(currency_rates=rates)
    first = _payment(transaction, 1, amount=100.0, currency="EUR")
    second = _payment(transaction, 2, amount=100.0, currency="USD")
    for body in (first, second):
        assert (await client.post("/score", json=body)).status == 200
    record = await (await client.get("/decisions/tx-2")).json()
    features = _features(record)
    # 100 USD is 50 EUR: the customer's mean is of 100 and 50, not of 100 and 100.
    assert features["TX_AMOUNT"] == 50.0
    assert features["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == 75.0
    await client.close()
    with sqlite3.connect(tmp_path / "var" / "audit.sqlite3") as conn:
        rows = conn.execute(
            "SELECT transaction_id, amount, original_amount, original_currency, rate_version"
            " FROM decisions ORDER BY transaction_id"
        ).fetchall()
    assert rows == [
        ("tx-1", 100.0, 100.0, "EUR", "2026-12-01"),
        ("tx-2", 50.0, 100.0, "USD", "2026-12-01"),
    ]
    # The warm start rebuilds the windows from the converted amounts, as they were online.
    restarted = await make_client(currency_rates=rates)
    third = _payment(transaction, 3, amount=30.0, currency="EUR")
    assert (await restarted.post("/score", json=third)).status == 200
    record = await (await restarted.get("/decisions/tx-3")).json()
    assert _features(record)["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == 60.0


async def test_a_currency_without_a_rate_is_refused_naming_it(
    make_client: ClientFactory, transaction: dict, rates: Path
) -> None:
    client = await make_client(currency_rates=rates)
    refused = await client.post("/score", json=_payment(transaction, 1, currency="GBP"))
    assert refused.status == 422
    error = (await refused.json())["error"]
    assert error["type"] == "unsupported_currency" and "'GBP'" in error["message"]
    # In a batch, only that item is refused.
    batch = {
        "transactions": [
            _payment(transaction, 2, currency="USD"),
            _payment(transaction, 3, currency="GBP"),
        ]
    }
    results = (await (await client.post("/score/batch", json=batch)).json())["results"]
    assert "score" in results[0]
    assert results[1]["index"] == 1 and results[1]["error"]["type"] == "unsupported_currency"


async def test_a_converted_payment_retried_after_a_restart_is_a_replay(
    make_client: ClientFactory, transaction: dict, rates: Path
) -> None:
    body = _payment(transaction, 1, amount=80.0, currency="USD")
    first = await make_client(currency_rates=rates)
    original = await (await first.post("/score", json=body)).json()
    await first.close()
    second = await make_client(currency_rates=rates)
    retry = await second.post("/score", json=body)
    assert retry.status == 200 and retry.headers.get("Idempotent-Replayed") == "true"
    assert await retry.json() == original
    # The same id with another currency is another payment: a conflict, not a replay.
    other = await second.post("/score", json={**body, "currency": "EUR"})
    assert other.status == 409


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "not valid"),
        (json.dumps({**RATES, "rates": {"USD": -1}}), "positive"),
        (json.dumps({**RATES, "rates": {"usd": 1}}), "ISO 4217"),
        (json.dumps({"reference": "EUR", "rates": {}}), "version"),
        (json.dumps({**RATES, "extra": 1}), "extra"),
    ],
)
def test_a_bad_rate_table_stops_start_up_naming_the_file(
    tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(ValidationError) as caught:
        Settings.of(currency_rates=path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_the_configured_currency_must_have_a_rate(rates: Path) -> None:
    with pytest.raises(ValidationError, match="no rate for currency 'GBP'"):
        Settings.of(currency_rates=rates, currency="GBP")


def test_a_toml_rate_table_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text('reference = "EUR"\nversion = "v7"\n[rates]\nUSD = 1\n')
    table = Settings.of(currency_rates=path).scoring.pricing().table
    assert table is not None and table.version == "v7" and table.rates == {"USD": 1.0}
