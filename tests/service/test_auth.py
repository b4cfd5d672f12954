"""Optional API keys: off by default; when configured, every endpoint but /healthz needs one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.service.conftest import API_KEY, ClientFactory

PROTECTED = [
    ("post", "/score"),
    ("post", "/score/batch"),
    ("post", "/labels"),
    ("get", "/decisions/some-id"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
]


async def test_without_configured_keys_no_key_is_needed(client: Any, transaction: dict) -> None:
    assert (await client.post("/score", json=transaction)).status == 200


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_key_is_401(make_client: ClientFactory, method: str, path: str) -> None:
    client = await make_client(api_keys=(API_KEY,))
    response = await getattr(client, method)(path, json={})
    assert response.status == 401
    assert (await response.json())["error"]["type"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_wrong_key_is_403(make_client: ClientFactory, method: str, path: str) -> None:
    client = await make_client(api_keys=(API_KEY,))
    response = await getattr(client, method)(path, json={}, headers={"X-API-Key": "x" * 24})
    assert response.status == 403
    assert (await response.json())["error"]["type"] == "forbidden"


async def test_any_configured_key_is_accepted(
    make_client: ClientFactory, transaction: dict
) -> None:
    other = "o" * 20
    client = await make_client(api_keys=(API_KEY, other))
    for key in (API_KEY, other):
        tx = {**transaction, "transaction_id": f"tx-{key[0]}"}
        response = await client.post("/score", json=tx, headers={"X-API-Key": key})
        assert response.status == 200


async def test_key_header_is_configurable(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,), api_key_header="X-Riskscore-Key")
    assert (await client.get("/readyz", headers={"X-API-Key": API_KEY})).status == 401
    assert (await client.get("/readyz", headers={"X-Riskscore-Key": API_KEY})).status == 200


async def test_healthz_is_open(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


def test_short_keys_are_refused() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="at least 16"):
        Settings.of(api_keys=("short",))


async def test_a_key_that_is_not_utf8_is_refused_not_a_crash(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,))
    # A raw request: HTTP clients refuse to send such header bytes themselves.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-API-Key: \xe9\xff\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split()[1] == b"403"
