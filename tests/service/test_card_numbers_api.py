"""The card-number policy at the HTTP edge, in process: what a client is told, and the
settings that must go together."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.service.conftest import ClientFactory

CARD = "4111 1111 1111 1111"
KEY = "k" * 40


async def test_refuse_names_the_field_and_says_to_send_a_token(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client()  # refuse is the default
    response = await client.post("/score", json={**transaction, "terminal_id": CARD})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["message"] == "invalid request: terminal_id"
    assert "send a token" in error["fields"][0]["message"]
    assert "4111" not in await response.text()
    for path in (f"/decisions/{CARD}", f"/decisions?customer_id={CARD}"):
        response = await client.get(path)
        assert response.status == 422, path
        assert "send a token" in await response.text()


async def test_tokenise_says_so_and_keeps_one_token_per_card(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client(pan_policy="tokenise", pan_hmac_key=KEY)
    first = await client.post("/score", json={**transaction, "customer_id": CARD})
    assert first.status == 200
    assert first.headers["Card-Number-Tokenised"] == "customer_id"
    lookup = await client.get(f"/decisions/{transaction['transaction_id']}")
    token = (await lookup.json())["transaction"]["customer_id"]
    assert token.startswith("tok_")
    found = await client.get("/decisions", params={"customer_id": CARD.replace(" ", "")})
    assert found.headers["Card-Number-Tokenised"] == "customer_id"
    assert [d["transaction"]["customer_id"] for d in (await found.json())["decisions"]] == [token]


async def test_allow_keeps_the_value(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client(pan_policy="allow")
    response = await client.post("/score", json={**transaction, "customer_id": CARD})
    assert response.status == 200
    assert "Card-Number-Tokenised" not in response.headers


def test_tokenise_needs_a_long_enough_key() -> None:
    with pytest.raises(ValidationError, match="RISKSCORE_PAN_HMAC_KEY"):
        Settings.of(pan_policy="tokenise")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings.of(pan_policy="tokenise", pan_hmac_key="short")
