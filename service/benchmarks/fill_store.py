"""Fill an audit store as a running service would have: a simulated history scored by the
real scorer through the real HTTP API, then chargebacks sent with their labelled-at times.
What `riskscore train --from-store` is measured on in the README.

    python -m service.benchmarks.fill_store --data-dir DIR [--customers 300] [--days 30]

Labels: a fraud gets its chargeback (labelled 1 to 7 days after the payment) unless it was
declined, in which case half get one (a declined payment never completes); one legitimate
payment in ten gets a cleared label (a manual review); the rest get none.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from aiohttp.test_utils import TestClient, TestServer

from features.simulator import SimulationConfig, simulate
from service.app import WARM_START, create_app
from service.settings import Settings

BATCH = 400
CLEARED_SHARE = 0.1


def payloads(config: SimulationConfig) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The simulated payments as API payloads in time order, and each one's fraud label
    by transaction id."""
    frame = simulate(config)
    transactions = [
        {
            "transaction_id": f"tx-{tid}",
            "timestamp": pd.Timestamp(moment).isoformat() + "Z",
            "customer_id": f"c-{customer}",
            "terminal_id": f"t-{terminal}",
            "amount": float(amount),
            "currency": "EUR",
        }
        for tid, moment, customer, terminal, amount in zip(
            frame.TRANSACTION_ID,
            frame.TX_DATETIME,
            frame.CUSTOMER_ID,
            frame.TERMINAL_ID,
            frame.TX_AMOUNT,
            strict=True,
        )
    ]
    labels = {
        f"tx-{tid}": bool(f) for tid, f in zip(frame.TRANSACTION_ID, frame.TX_FRAUD, strict=True)
    }
    return transactions, labels


def _labels(
    transactions: list[dict[str, Any]], truth: dict[str, bool], actions: dict[str, str], seed: int
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for tx in transactions:
        is_fraud = truth[tx["transaction_id"]]
        declined = actions[tx["transaction_id"]] == "decline"
        sent = (not declined or rng.random() < 0.5) if is_fraud else rng.random() < CLEARED_SHARE
        if sent:
            event = datetime.fromisoformat(tx["timestamp"])
            lag = timedelta(days=float(rng.uniform(1.0, 7.0)))
            out.append(
                {
                    "transaction_id": tx["transaction_id"],
                    "is_fraud": is_fraud,
                    "labelled_at": (event + lag).isoformat(),
                }
            )
    return out


async def score_all(
    client: TestClient[Any, Any], transactions: list[dict[str, Any]]
) -> dict[str, str]:
    """Score every payment through ``/score/batch``; each one's action by transaction id.

    A roomy budget: the second stage decides every in-band payment, so what the store
    holds does not depend on how loaded the machine is."""
    actions: dict[str, str] = {}
    for i in range(0, len(transactions), BATCH):
        response = await client.post(
            "/score/batch",
            json={"transactions": transactions[i : i + BATCH]},
            headers={"X-Deadline-Ms": "60000"},
        )
        if response.status != 200:
            raise RuntimeError(f"/score/batch answered {response.status}")
        for item in (await response.json())["results"]:
            actions[item["transaction_id"]] = item["action"]
    return actions


async def fill(data_dir: Path, config: SimulationConfig) -> dict[str, Any]:
    transactions, truth = payloads(config)
    app = create_app(Settings.of(data_dir=data_dir, kafka="off"))
    started = time.perf_counter()
    async with TestClient(TestServer(app)) as client:
        await app[WARM_START]
        actions = await score_all(client, transactions)
        scored_s = time.perf_counter() - started
        labels = _labels(transactions, truth, actions, config.seed)
        for i in range(0, len(labels), BATCH):
            response = await client.post("/labels", json={"labels": labels[i : i + BATCH]})
            if response.status != 200:
                raise RuntimeError(f"/labels answered {response.status}")
    return {
        "payments": len(transactions),
        "frauds": sum(truth.values()),
        "declined": sum(a == "decline" for a in actions.values()),
        "labels": len(labels),
        "scored_s": round(scored_s, 1),
        "first_day": str(config.start),
        "last_day": str(config.end),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="where audit.sqlite3 goes")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 4, 1))
    args = parser.parse_args(argv)
    config = SimulationConfig(
        customers=args.customers,
        terminals=2 * args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(asyncio.run(fill(args.data_dir, config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
