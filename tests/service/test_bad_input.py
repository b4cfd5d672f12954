"""Every kind of bad request gets its own status and the one error shape, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.service.conftest import ClientFactory


async def _error(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    return dict(body["error"])


async def test_malformed_json_is_400(client: Any) -> None:
    response = await client.post(
        "/score", data=b'{"transaction_id": "x",', headers={"Content-Type": "application/json"}
    )
    await _error(response, 400, "invalid_json")


async def test_non_utf8_body_is_400(client: Any) -> None:
    response = await client.post(
        "/score", data=b"\xff\xfe{}", headers={"Content-Type": "application/json"}
    )
    await _error(response, 400, "invalid_json")


async def test_wrong_content_type_is_415(client: Any, transaction: dict) -> None:
    response = await client.post(
        "/score", data=json.dumps(transaction), headers={"Content-Type": "text/plain"}
    )
    await _error(response, 415, "unsupported_media_type")


async def test_missing_content_type_is_415(client: Any, transaction: dict) -> None:
    response = await client.post("/score", data=json.dumps(transaction).encode())
    await _error(response, 415, "unsupported_media_type")


async def test_body_over_the_limit_is_413(make_client: ClientFactory, transaction: dict) -> None:
    client = await make_client(max_body_bytes=2048)
    padded = {**transaction, "customer_id": "c" * 4000}
    response = await client.post("/score", json=padded)
    await _error(response, 413, "payload_too_large")


async def test_chunked_body_over_the_limit_is_413(make_client: ClientFactory) -> None:
    client = await make_client(max_body_bytes=2048)

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    response = await client.post(
        "/score", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await _error(response, 413, "payload_too_large")


async def test_schema_errors_are_422_naming_each_field(client: Any, transaction: dict) -> None:
    bad = {**transaction, "amount": -3, "currency": "euro", "surprise": 1}
    del bad["customer_id"]
    error = await _error(await client.post("/score", json=bad), 422, "validation_error")
    fields = {f["field"] for f in error["fields"]}
    assert fields == {"amount", "currency", "surprise", "customer_id"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "yesterday"),
        ("timestamp", "2999-01-01T00:00:00+00:00"),
        ("timestamp", "2025-01-05T12:00:00+02:00:30"),  # stored offsets are whole minutes
        ("amount", "12.5"),
        ("amount", True),
        ("amount", 5e6),
        ("transaction_id", ""),
        ("terminal_id", 17),
    ],
)
async def test_each_bad_value_is_named(
    client: Any, transaction: dict, field: str, value: object
) -> None:
    error = await _error(
        await client.post("/score", json={**transaction, field: value}), 422, "validation_error"
    )
    assert [f["field"] for f in error["fields"]] == [field]


async def test_json_that_is_not_an_object_is_422(client: Any) -> None:
    error = await _error(await client.post("/score", json=[1, 2]), 422, "validation_error")
    assert error["fields"][0]["field"] == "body"


async def test_batch_over_the_limit_is_413(make_client: ClientFactory, transaction: dict) -> None:
    client = await make_client(max_batch_size=2)
    items = [{**transaction, "transaction_id": f"b{i}"} for i in range(3)]
    response = await client.post("/score/batch", json={"transactions": items})
    await _error(response, 413, "payload_too_large")


async def test_batch_without_transactions_is_422(client: Any) -> None:
    for body in ({}, {"transactions": []}, {"transactions": "x"}):
        error = await _error(await client.post("/score/batch", json=body), 422, "validation_error")
        assert error["fields"][0]["field"] == "transactions"


async def test_unknown_explain_mode_is_422(client: Any, transaction: dict) -> None:
    response = await client.post("/score?explain=everything", json=transaction)
    error = await _error(response, 422, "validation_error")
    assert error["fields"][0]["field"] == "explain"


async def test_unknown_path_is_404(client: Any) -> None:
    await _error(await client.get("/nowhere"), 404, "not_found")


async def test_wrong_method_is_405(client: Any) -> None:
    error = await _error(await client.get("/score"), 405, "method_not_allowed")
    assert "POST" in error["message"]


async def test_bad_label_is_422(client: Any) -> None:
    response = await client.post("/labels", json={"transaction_id": "x", "is_fraud": "yes"})
    error = await _error(response, 422, "validation_error")
    assert [f["field"] for f in error["fields"]] == ["is_fraud"]


@pytest.mark.parametrize("bad_id", ["\u0000x", "tab\there", "..", "."])
async def test_ids_that_would_break_storage_or_urls_are_422(
    client: Any, transaction: dict, bad_id: str
) -> None:
    error = await _error(
        await client.post("/score", json={**transaction, "transaction_id": bad_id}),
        422,
        "validation_error",
    )
    assert [f["field"] for f in error["fields"]] == ["transaction_id"]


async def test_deeply_nested_json_is_400(client: Any) -> None:
    response = await client.post(
        "/score", data=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    await _error(response, 400, "invalid_json")


async def test_integer_too_long_to_parse_is_400(client: Any) -> None:
    body = b'{"amount": ' + b"9" * 5000 + b"}"
    response = await client.post("/score", data=body, headers={"Content-Type": "application/json"})
    await _error(response, 400, "invalid_json")


async def test_amount_beyond_any_float_is_422(client: Any, transaction: dict) -> None:
    body = json.dumps({**transaction, "amount": 0}).replace('"amount": 0', '"amount": ' + "9" * 400)
    response = await client.post(
        "/score", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    error = await _error(response, 422, "validation_error")
    assert [f["field"] for f in error["fields"]] == ["amount"]


async def test_content_type_parameters_are_accepted(client: Any, transaction: dict) -> None:
    response = await client.post(
        "/score",
        data=json.dumps(transaction).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status == 200


async def test_batch_item_that_is_not_an_object_names_the_item(client: Any) -> None:
    response = await client.post("/score/batch", json={"transactions": [42]})
    item = (await response.json())["results"][0]
    assert item["error"]["fields"][0]["field"] == "transactions.0"
