"""``/openapi.json`` describes every route the app serves, as it is configured; what the
schema promises (405 with Allow, the explain enum, the stated rules) the service keeps."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service.api_routes import ROUTES
from tests.service.conftest import API_KEY, ClientFactory
from tests.service.fuzz.hooks import unstated_rules

COMPLIANCE_KEY = "c" * 24


async def _document(client: Any, **headers: str) -> dict[str, Any]:
    response = await client.get("/openapi.json", headers=headers)
    assert response.status == 200
    return dict(await response.json())


def _served(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers (HEAD, which aiohttp adds to GET, aside)."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


async def test_every_served_route_is_described_and_nothing_else(client: Any) -> None:
    document = await _document(client)
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert described == _served(client.app)
    # The compliance role's routes, which a hand-kept list once left out.
    assert {
        "/decisions",
        "/reports/decisions.csv",
        "/reports/decisions.jsonl",
        "/reports/decisions.html",
        "/reports/decisions/{transaction_id}.html",
        "/reports/summary.html",
    } <= set(document["paths"])


async def test_every_reference_resolves_and_every_operation_is_named(client: Any) -> None:
    document = await _document(client)
    schemas = document["components"]["schemas"]
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document))):
        assert ref in schemas
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(ROUTES)


async def test_parameters_headers_and_errors_are_described(client: Any) -> None:
    paths = (await _document(client))["paths"]
    score = paths["/score"]["post"]
    params = {(p["in"], p["name"]): p for p in score["parameters"]}
    assert params[("query", "explain")]["schema"]["enum"] == ["reasons", "full"]
    assert params[("header", "X-Explain")]["schema"]["enum"] == ["reasons", "full"]
    assert params[("header", "X-Deadline-Ms")]["schema"]["maximum"] == 60_000
    assert {"400", "409", "413", "415", "422", "503"} <= set(score["responses"])
    search = paths["/decisions"]["get"]
    names = {p["name"] for p in search["parameters"]}
    # Query parameters come from the model that validates them, under their public names.
    assert {"from", "to", "action", "customer_id", "reason", "limit", "cursor"} <= names
    page = paths["/reports/summary.html"]["get"]
    assert set(page["responses"]["200"]["content"]) == {"text/html", "application/pdf"}
    assert "501" in page["responses"]


async def test_the_future_timestamp_rule_is_stated(client: Any) -> None:
    schemas = (await _document(client))["components"]["schemas"]
    assert "24 hours" in schemas["Transaction"]["properties"]["timestamp"]["description"]


async def test_the_batch_limit_is_the_configured_one(make_client: ClientFactory) -> None:
    client = await make_client(max_batch_size=7)
    schemas = (await _document(client))["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["transactions"]["maxItems"] == 7
    assert schemas["LabelBatchRequest"]["properties"]["labels"]["maxItems"] == 7


async def test_security_follows_each_route_s_role(make_client: ClientFactory) -> None:
    client = await make_client(
        api_keys=(API_KEY,), compliance_api_keys=(COMPLIANCE_KEY,), api_key_header="X-Key"
    )
    document = await _document(client, **{"X-Key": API_KEY})
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-Key"}
    paths = document["paths"]
    assert paths["/score"]["post"]["security"] == [{"scoringKey": []}]
    assert paths["/decisions"]["get"]["security"] == [{"complianceKey": []}]
    assert paths["/reports/summary.html"]["get"]["security"] == [{"complianceKey": []}]
    both = [{"scoringKey": []}, {"complianceKey": []}]
    assert paths["/decisions/{transaction_id}"]["get"]["security"] == both
    # Probes and liveness are open by default: the document must not claim otherwise.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["security"] == []
        assert "401" not in paths[path]["get"]["responses"]
    assert "401" in paths["/score"]["post"]["responses"]


async def test_probes_need_a_key_when_so_configured(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,), probes_need_key=True)
    paths = (await _document(client, **{"X-API-Key": API_KEY}))["paths"]
    assert paths["/readyz"]["get"]["security"] != []
    assert paths["/healthz"]["get"]["security"] == []


@pytest.mark.parametrize(("method", "path"), [(r.method, r.path) for r in ROUTES])
async def test_a_method_a_path_does_not_take_is_405_with_allow(
    client: Any, method: str, path: str
) -> None:
    concrete = re.sub(r"\{[^}]+\}", "t1", path)  # every path parameter
    wrong = "PATCH" if method != "PATCH" else "PUT"
    response = await client.request(wrong, concrete)
    assert response.status == 405
    assert method in response.headers["Allow"].split(",")
    assert (await response.json())["error"]["type"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/score", "/score/batch"])
async def test_an_empty_explain_is_refused_as_the_enum_says(
    client: Any, transaction: dict, path: str
) -> None:
    body = transaction if path == "/score" else {"transactions": [transaction]}
    response = await client.post(f"{path}?explain=", json=body)
    assert response.status == 422
    assert (await response.json())["error"]["fields"][0]["field"] == "explain"
    response = await client.post(path, json=body, headers={"X-Explain": ""})
    assert response.status == 422


async def test_explain_may_come_once_from_the_query_or_the_header(
    client: Any, transaction: dict
) -> None:
    response = await client.post("/score?explain=full&explain=full", json=transaction)
    assert response.status == 422
    response = await client.post("/score", json=transaction, headers={"X-Explain": "full"})
    assert "shap" in await response.json()


def _refusal(*fields: tuple[str, str]) -> bytes:
    problems = [{"field": f, "message": m} for f, m in fields]
    return json.dumps({"error": {"type": "validation_error", "fields": problems}}).encode()


def test_the_fuzz_run_excuses_only_the_unstated_rules() -> None:
    future = ("timestamp", "timestamp 2999-01-01T00:00:00 is more than 1 day in the future")
    assert unstated_rules(422, _refusal(future)) == {"future_timestamp"}
    order = ("from", "'from' (2024-05-02) must be before 'to' (2024-05-01)")
    assert unstated_rules(422, _refusal(order)) == {"period_order"}
    # One complaint outside the rules, or another status, and nothing is excused.
    assert unstated_rules(422, _refusal(future, ("amount", "too large"))) == set()
    assert unstated_rules(500, _refusal(future)) == set()
    assert unstated_rules(422, _refusal(("amount", "in the future"))) == set()
    assert unstated_rules(422, b"not json") == set()
