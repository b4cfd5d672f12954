"""The list endpoints refuse what they must (a hardening test per refused input), and a
card number as a list value follows the card-number policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.band_override import band_widened_copy
from tests.service.conftest import API_KEY, ClientFactory
from tests.service.test_cascade_api import ROOMY

ADMIN = "a" * 24
CARD = "4111 1111 1111 1111"
CARD_PATH = "4111111111111111"
PAN_KEY = "p" * 40


def _as(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_without_admin_keys_nobody_may_change_a_list(make_client: ClientFactory) -> None:
    client = await make_client()  # no keys at all: the laptop default
    response = await client.put("/lists/blocked_customers/c%01", json={"reason": "x"})
    assert response.status == 403
    assert "RISKSCORE_ADMIN_API_KEYS" in (await response.json())["error"]["message"]
    assert (await client.get("/lists")).status == 403


async def test_each_refused_input(make_client: ClientFactory, transaction: dict[str, Any]) -> None:
    client = await make_client(api_keys=(API_KEY,), admin_api_keys=(ADMIN,))
    put = "/lists/blocked_customers/c1"
    cases = [
        (client.put(put, json={"reason": "x"}), 401, "unauthorized"),
        (client.put(put, json={"reason": "x"}, headers=_as(API_KEY)), 403, "forbidden"),
        (
            client.put("/lists/blocked_cards/c1", json={"reason": "x"}, headers=_as(ADMIN)),
            404,
            "not_found",
        ),
        (client.put(put, json={}, headers=_as(ADMIN)), 422, "validation_error"),
        (client.put(put, json={"reason": ""}, headers=_as(ADMIN)), 422, "validation_error"),
        (client.put(put, json={"reason": "x" * 501}, headers=_as(ADMIN)), 422, "validation_error"),
        (client.put(put, json={"reason": "a\nb"}, headers=_as(ADMIN)), 422, "validation_error"),
        # Recorded for good and quoted in decisions: a card number there is refused.
        (
            client.put(put, json={"reason": f"stolen card {CARD}"}, headers=_as(ADMIN)),
            422,
            "validation_error",
        ),
        (
            client.put(put, json={"reason": "x", "by": "me"}, headers=_as(ADMIN)),
            422,
            "validation_error",
        ),
        (
            client.put(put, data=b"{", headers={**_as(ADMIN), "Content-Type": "application/json"}),
            400,
            "invalid_json",
        ),
        (client.put(put, data=b"reason", headers=_as(ADMIN)), 415, "unsupported_media_type"),
        (
            client.put("/lists/blocked_customers/c%01", json={"reason": "x"}, headers=_as(ADMIN)),
            422,
            "validation_error",
        ),
        (client.delete(put, headers=_as(ADMIN)), 404, "not_found"),
        (client.patch(put, json={"reason": "x"}, headers=_as(ADMIN)), 405, "method_not_allowed"),
        # An admin key changes lists; it does not score.
        (client.post("/score", json=transaction, headers=_as(ADMIN)), 403, "forbidden"),
    ]
    for request, status, kind in cases:
        response = await request
        assert response.status == status, await response.text()
        assert (await response.json())["error"]["type"] == kind
    # Nothing was recorded by any of them.
    lists = await (await client.get("/lists", headers=_as(ADMIN))).json()
    assert lists["version"] == 0


async def test_a_card_number_as_a_value_is_refused_by_default(make_client: ClientFactory) -> None:
    client = await make_client(api_keys=(API_KEY,), admin_api_keys=(ADMIN,))
    response = await client.put(
        f"/lists/blocked_customers/{CARD_PATH}", json={"reason": "x"}, headers=_as(ADMIN)
    )
    assert response.status == 422
    assert CARD_PATH not in await response.text()


async def test_a_tokenised_card_on_a_list_matches_the_payments_of_that_card(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client(
        api_keys=(API_KEY,), admin_api_keys=(ADMIN,), pan_policy="tokenise", pan_hmac_key=PAN_KEY
    )
    response = await client.put(
        f"/lists/blocked_customers/{CARD_PATH}", json={"reason": "stolen card"}, headers=_as(ADMIN)
    )
    assert response.status == 200
    change = await response.json()
    assert change["value"] != CARD_PATH and CARD_PATH not in await response.text()
    payment = {**transaction, "customer_id": CARD}
    decision = await (await client.post("/score", json=payment, headers=_as(API_KEY))).json()
    assert decision["action"] == "decline"
    assert decision["reasons"][0]["code"] == "LIST_blocked_customers"
    assert CARD_PATH not in decision["reasons"][0]["text"]


async def test_a_removal_takes_an_empty_body_and_the_lists_show_on_metrics(
    make_client: ClientFactory,
) -> None:
    client = await make_client(api_keys=(API_KEY,), admin_api_keys=(ADMIN,))
    put = "/lists/blocked_customers/c1"
    assert (await client.put(put, json={"reason": "case 7"}, headers=_as(ADMIN))).status == 200
    # The reason of a removal is optional: no body, or an empty object, as documented.
    removed = await client.delete(put, json={}, headers=_as(ADMIN))
    assert removed.status == 200, await removed.text()
    assert (await removed.json())["reason"] == ""
    metrics = await (await client.get("/metrics")).text()
    assert "riskscore_lists_version 2.0" in metrics
    stamp = next(
        line
        for line in metrics.splitlines()
        if line.startswith("riskscore_lists_last_refresh_timestamp_seconds ")
    )
    assert float(stamp.split()[1]) > 0
    assert "riskscore_lists_poll_failures_total 0.0" in metrics


async def test_a_retry_after_a_block_gets_the_original_decision_and_the_next_payment_is_declined(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client(api_keys=(API_KEY,), admin_api_keys=(ADMIN,))
    first = await (await client.post("/score", json=transaction, headers=_as(API_KEY))).json()
    assert first["action"] != "decline"
    customer = transaction["customer_id"]
    blocked = await client.put(
        f"/lists/blocked_customers/{customer}", json={"reason": "case 9"}, headers=_as(ADMIN)
    )
    assert blocked.status == 200
    # The retry of a decided payment is that decision, not a new one under today's lists.
    retry = await client.post("/score", json=transaction, headers=_as(API_KEY))
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert await retry.json() == first
    # A new payment of that customer is declined by the list.
    later = {**transaction, "transaction_id": transaction["transaction_id"] + "-2"}
    decision = await (await client.post("/score", json=later, headers=_as(API_KEY))).json()
    assert decision["action"] == "decline"
    assert decision["reasons"][0]["code"] == "LIST_blocked_customers"


async def test_a_block_holds_for_a_payment_the_second_stage_decides(
    make_client: ClientFactory, transaction: dict[str, Any], tmp_path: Path
) -> None:
    stage = band_widened_copy(tmp_path / "sequence")  # every payment escalates
    client = await make_client(
        api_keys=(API_KEY,), admin_api_keys=(ADMIN,), sequence_model_dir=stage
    )
    customer = transaction["customer_id"]
    put = f"/lists/blocked_customers/{customer}"
    assert (await client.put(put, json={"reason": "case 10"}, headers=_as(ADMIN))).status == 200
    headers = {**_as(API_KEY), **ROOMY}
    decision = await (await client.post("/score", json=transaction, headers=headers)).json()
    assert decision["stage"] == "sequence"  # the stage spoke, and the block still wins
    assert decision["action"] == "decline"
    assert decision["reasons"][0]["code"] == "LIST_blocked_customers"
