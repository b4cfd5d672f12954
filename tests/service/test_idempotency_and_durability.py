"""A transaction id is one payment: retries get the original decision, across restarts too."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from service.app import SCORER
from tests.service.conftest import ClientFactory


def _features(record: dict[str, Any]) -> dict[str, float]:
    return {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}


async def test_retry_returns_the_original_decision_without_counting_twice(
    client: Any, transaction: dict
) -> None:
    first = await client.post("/score", json=transaction)
    retry = await client.post("/score", json=dict(reversed(list(transaction.items()))))
    assert retry.status == 200
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await retry.json() == await first.json()
    # The next payment of the customer sees one earlier payment, not two.
    later = {**transaction, "transaction_id": "tx-0002", "timestamp": "2025-06-02T15:00:00+02:00"}
    await client.post("/score", json=later)
    record = await (await client.get("/decisions/tx-0002")).json()
    assert _features(record)["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2.0


async def test_same_id_with_another_body_is_a_409(client: Any, transaction: dict) -> None:
    await client.post("/score", json=transaction)
    response = await client.post("/score", json={**transaction, "amount": 60.0})
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["type"] == "idempotency_conflict"
    assert transaction["transaction_id"] in error["message"]


async def test_simultaneous_duplicates_get_one_decision(client: Any, transaction: dict) -> None:
    responses = await asyncio.gather(*(client.post("/score", json=transaction) for _ in range(8)))
    bodies = [await r.json() for r in responses]
    assert all(r.status == 200 for r in responses)
    assert all(body == bodies[0] for body in bodies)
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    stats = client.app[SCORER].engine.stats()
    assert stats["customer_events"] == 1


async def test_decisions_survive_a_restart(make_client: ClientFactory, transaction: dict) -> None:
    first = await make_client()
    original = await (await first.post("/score?explain=full", json=transaction)).json()
    await first.close()  # shuts the app down: the audit store is flushed and closed

    second = await make_client()
    stored = await second.get(f"/decisions/{transaction['transaction_id']}")
    assert stored.status == 200
    record = await stored.json()
    assert record["score"] == original["score"]
    assert record["explanation"]["raw_score"] == original["raw_score"]
    retry = await second.post("/score?explain=full", json=transaction)
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert await retry.json() == original
    conflict = await second.post("/score", json={**transaction, "amount": 1.0})
    assert conflict.status == 409


async def test_restart_rebuilds_the_feature_state(make_client: ClientFactory) -> None:
    def tx(i: int) -> dict[str, Any]:
        return {
            "transaction_id": f"r-{i}",
            "timestamp": f"2025-06-0{1 + i}T12:00:00+00:00",
            "customer_id": "c-1",
            "terminal_id": "t-1",
            "amount": 20.0 + i,
        }

    first = await make_client()
    for i in range(3):
        await first.post("/score", json=tx(i))
    await first.close()

    second = await make_client()
    await second.post("/score", json=tx(3))
    record = await (await second.get("/decisions/r-3")).json()
    features = _features(record)
    # Four payments of the customer in 7 days, the previous one a day earlier: the restart
    # lost nothing of the customer's history.
    assert features["CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 4.0
    assert features["CUSTOMER_ID_SECONDS_SINCE_PREVIOUS"] == 86_400.0
    assert features["CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] == (20 + 21 + 22 + 23) / 4


async def test_a_failed_audit_write_is_refused_and_its_retry_decides_once(
    make_client: ClientFactory, transaction: dict
) -> None:
    client = await make_client(audit_busy_timeout_ms=50)
    store = client.app[SCORER].store
    # Another process holding the write lock: the write fails after the busy timeout.
    other = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")
    refused = await client.post("/score", json=transaction)
    assert refused.status == 503
    error = (await refused.json())["error"]
    assert error["type"] == "audit_unavailable"
    assert "sqlite" not in error["message"] and "/" not in error["message"]
    # The label of a decision that was never recorded is refused too.
    label = await client.post(
        "/labels", json={"transaction_id": transaction["transaction_id"], "is_fraud": True}
    )
    assert label.status == 404
    other.execute("ROLLBACK")
    other.close()

    retry = await client.post("/score", json=transaction)
    assert retry.status == 200
    assert (await client.get(f"/decisions/{transaction['transaction_id']}")).status == 200
    later = {**transaction, "transaction_id": "tx-0002", "timestamp": "2025-06-02T15:00:00+02:00"}
    await client.post("/score", json=later)
    record = await (await client.get("/decisions/tx-0002")).json()
    # The refused attempt and its retry count as one payment.
    assert _features(record)["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2.0
