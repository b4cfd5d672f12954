"""Simulated payments as API payloads, for filling a real audit store through the real scorer."""

from __future__ import annotations

from typing import Any

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


def batches(items: list[Any], size: int = 400) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
