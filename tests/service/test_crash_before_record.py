"""A process that dies between the feature-state update and the audit write, on the redis
backend: the payment is in Redis (its id among the applied ones) and in no record.

The crash is made exact, with no kill timing: the first process scores the payments
against the shared Redis and records them in an audit store of its own, which is then
thrown away — for the shared audit store, every write of that process was lost after its
state updates. The second process, on the same Redis and an empty audit store, is sent
the same payments again (with new ones behind them, in one batch, as a consumer's
re-delivered batch would bring them): each must be decided once, with exactly the
features, score and sequence a run without the crash gives, and recorded once; a
different body under one of those ids is still refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from service.handlers import REPLAYED_HEADER
from tests.redis_server import RedisServer
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import ROOMY, everything_in_band, tx

__all__ = ["everything_in_band"]  # the fixture, used by name below

# Two customers over the same terminals: the terminal windows mix both. A second payment
# of c-1 at the same instant as another: the first one's sequence must not show it.
PAYMENTS = [tx(i, customer) for i in range(6) for customer in ("c-1", "c-2")]
PAYMENTS.insert(5, tx(2, "c-1", transaction_id="seq-c-1-same-instant", amount=99.0))
CRASHED = PAYMENTS[:8]  # applied to Redis by the process that died, never recorded


def _decided(record: dict[str, Any]) -> dict[str, Any]:
    """What a decision is, without when it was made or how long it took."""
    explanation = record["explanation"]
    sequence = record.get("sequence") or {}
    return {
        "score": record["score"],
        "action": record["action"],
        "stage": record["stage"],
        "features": [(a["feature"], a["value"]) for a in explanation["attributions"]],
        "raw_score": explanation["raw_score"],
        "fast_score": sequence.get("fast_score"),
        "sequence": [a["transaction_id"] for a in sequence.get("attributions", [])],
    }


async def _score(client: Any, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post("/score/batch", json={"transactions": payments}, headers=ROOMY)
    assert response.status == 200, await response.text()
    results: list[dict[str, Any]] = (await response.json())["results"]
    return results


async def _records(client: Any) -> dict[str, dict[str, Any]]:
    records = {}
    for payment in PAYMENTS:
        response = await client.get(f"/decisions/{payment['transaction_id']}")
        assert response.status == 200, payment["transaction_id"]
        records[payment["transaction_id"]] = _decided(await response.json())
    return records


async def test_a_payment_applied_but_never_recorded_is_decided_exactly_once_on_redelivery(
    make_client: ClientFactory,
    everything_in_band: Path,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    def client_on(db: int, store: str) -> Any:
        return make_client(
            sequence_model_dir=everything_in_band,
            feature_state_url=redis_server.url(db),
            data_dir=tmp_path / store,
        )

    for db in (6, 7):
        redis.Redis.from_url(redis_server.url(db)).flushdb()

    # The run without a crash: every payment once, one process.
    clean = await client_on(6, "clean")
    assert all("error" not in r for r in await _score(clean, PAYMENTS))
    expected = await _records(clean)
    assert {d["stage"] for d in expected.values()} == {"sequence"}  # the sequences count too
    await clean.close()

    # The process that dies: its state updates reach Redis, its records are lost.
    crashed = await client_on(7, "lost")
    assert all("error" not in r for r in await _score(crashed, CRASHED))
    await crashed.close()

    restarted = await client_on(7, "kept")
    # Another body under an applied id, before the original comes back: still refused.
    changed = {**CRASHED[3], "amount": CRASHED[3]["amount"] + 1.0}
    (refused,) = await _score(restarted, [changed])
    assert refused["error"]["type"] == "idempotency_conflict", refused
    # The re-delivered batch, the payments the crash never reached behind it.
    results = await _score(restarted, PAYMENTS)
    assert [r.get("error") for r in results] == [None] * len(PAYMENTS)
    assert await _records(restarted) == expected
    # One record each: the search pages through every stored decision.
    page = await (await restarted.get("/decisions", params={"limit": "100"})).json()
    stored = sorted(d["transaction"]["transaction_id"] for d in page["decisions"])
    assert stored == sorted(p["transaction_id"] for p in PAYMENTS)
    # Sent once more, each is answered from its one record; another body stays refused.
    for payment in CRASHED[:2]:
        response = await restarted.post("/score", json=payment, headers=ROOMY)
        assert response.status == 200 and response.headers[REPLAYED_HEADER] == "true"
    response = await restarted.post("/score", json=changed, headers=ROOMY)
    assert response.status == 409
    assert (await response.json())["error"]["type"] == "idempotency_conflict"
    await restarted.close()


async def test_a_retry_of_a_recorded_payment_leaves_the_customers_sequence_alone(
    make_client: ClientFactory, everything_in_band: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The state replays the retried id (it knows it); the store holds its decision. The
    # sequence keeps 32 positions, so after 35 later payments the retried one's position
    # is trimmed: appending it again would put it at the end, in every later view.
    db = redis.Redis.from_url(redis_server.url(9))
    db.flushdb()
    client = await make_client(
        sequence_model_dir=everything_in_band,
        feature_state_url=redis_server.url(9),
        data_dir=tmp_path / "state",
    )
    payments = [tx(i) for i in range(36)]
    await _score(client, payments)
    (sequence_key,) = [key for key in db.scan_iter("*") if key.endswith(b":seq")]
    before = db.lrange(sequence_key, 0, -1)
    retried = await client.post("/score", json=payments[0], headers=ROOMY)
    assert retried.status == 200
    assert retried.headers.get(REPLAYED_HEADER) == "true"
    assert db.lrange(sequence_key, 0, -1) == before
    await _score(client, [tx(36)])
    record = await (await client.get(f"/decisions/{tx(36)['transaction_id']}")).json()
    assert payments[0]["transaction_id"] not in _decided(record)["sequence"]
    await client.close()
