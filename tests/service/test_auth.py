"""Optional API keys: off by default; when configured, every endpoint needs one but the
probes and metrics (/healthz, /readyz, /metrics), which a setting can close too."""

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
    ("get", "/openapi.json"),
]
PROBES = ["/healthz", "/readyz", "/metrics"]


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
    assert (await client.get("/openapi.json", headers={"X-API-Key": API_KEY})).status == 401
    assert (await client.get("/openapi.json", headers={"X-Riskscore-Key": API_KEY})).status == 200


async def test_healthz_is_open(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", PROBES)
async def test_probes_and_metrics_need_no_key_by_default(
    make_client: ClientFactory, path: str
) -> None:
    # A Kubernetes probe or a Prometheus scraper carries no credentials.
    client = await make_client(api_keys=(API_KEY,), compliance_api_keys=("c" * 24,))
    response = await client.get(path)
    assert response.status == 200, await response.text()


async def test_metrics_are_open_but_still_count_refused_requests(
    make_client: ClientFactory, transaction: dict
) -> None:
    client = await make_client(api_keys=(API_KEY,))
    assert (await client.post("/score", json=transaction)).status == 401
    metrics = await (await client.get("/metrics")).text()
    assert 'riskscore_http_requests_total{route="/score",status="401"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
async def test_a_setting_makes_probes_need_a_key(make_client: ClientFactory, path: str) -> None:
    client = await make_client(api_keys=(API_KEY,), probes_need_key=True)
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"X-API-Key": API_KEY})).status == 200
    assert (await client.get("/healthz")).status == 200  # liveness stays open


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
        b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-API-Key: \xe9\xff\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split()[1] == b"403"
