"""Simulated payments as API payloads, for filling a real audit store through the real scorer."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from features.simulator import SimulationConfig, simulate

# Small enough to score in a second or two, large enough for several pages and all actions.
HISTORY = SimulationConfig(customers=40, terminals=80, days=8, seed=3)


def payloads(config: SimulationConfig = HISTORY) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The payments in time order, and each one's fraud label by transaction id."""
    frame = simulate(config)
    transactions = [
        {
            "transaction_id": f"tx-{row.TRANSACTION_ID}",
            "timestamp": row.TX_DATETIME.isoformat() + "Z",
            "customer_id": f"c-{row.CUSTOMER_ID}",
            "terminal_id": f"t-{row.TERMINAL_ID}",
            "amount": float(row.TX_AMOUNT),
            "currency": "EUR",
        }
        for row in frame.itertuples()
    ]
    labels = {f"tx-{row.TRANSACTION_ID}": bool(row.TX_FRAUD) for row in frame.itertuples()}
    return transactions, labels


async def score_all(
    client: TestClient[Any, Any], transactions: list[dict[str, Any]]
) -> dict[str, str]:
    """Score every payment through ``/score/batch``; each one's action by transaction id.

    A roomy budget: the second stage decides every in-band payment, so what the store
    holds does not depend on how loaded the machine is."""
    actions: dict[str, str] = {}
    for batch in batches(transactions):
        response = await client.post(
            "/score/batch", json={"transactions": batch}, headers={"X-Deadline-Ms": "60000"}
        )
        assert response.status == 200
        for item in (await response.json())["results"]:
            actions[item["transaction_id"]] = item["action"]
    return actions


def batches(items: list[Any], size: int = 400) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
