"""Label feedback, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from explain.audit.sqlite_store import SQLiteAuditStore
from features.schema import Transaction
from service.app import SCORER


def _tx(i: int, day: int, terminal: str = "t-hot", **changes: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"l-{day}-{i}",
        "timestamp": f"2025-06-{day:02d}T{8 + i:02d}:00:00+00:00",
        "customer_id": f"c-{day}-{i}",
        "terminal_id": terminal,
        "amount": 42.0,
        **changes,
    }


def _features(record: dict[str, Any]) -> dict[str, float]:
    return {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}


async def test_labels_reach_the_terminal_risk_of_later_payments(client: Any) -> None:
    for i in range(4):
        await client.post("/score", json=_tx(i, day=1))
    outcomes = []
    for i, fraud in enumerate((True, True, False, False)):
        response = await client.post(
            "/labels", json={"transaction_id": f"l-1-{i}", "is_fraud": fraud}
        )
        assert response.status == 200
        outcomes.append((await response.json())["outcome"])
    assert outcomes == ["applied", "applied", "unchanged", "unchanged"]
    # Nine days later the labelled day sits inside the terminal's delayed windows.
    await client.post("/score", json=_tx(0, day=10))
    record = await (await client.get("/decisions/l-10-0")).json()
    assert _features(record)["TERMINAL_ID_RISK_7DAY_WINDOW"] == 0.5
    assert _features(record)["TERMINAL_ID_NB_TX_7DAY_WINDOW"] == 4.0
    labels = (await (await client.get("/decisions/l-1-0")).json())["labels"]
    assert [label["is_fraud"] for label in labels] == [True]


async def test_a_changed_label_is_applied_and_a_repeated_one_is_not_stored_twice(
    client: Any,
) -> None:
    await client.post("/score", json=_tx(0, day=1))
    for fraud, expected in ((True, "applied"), (True, "unchanged"), (False, "applied")):
        response = await client.post("/labels", json={"transaction_id": "l-1-0", "is_fraud": fraud})
        assert (await response.json())["outcome"] == expected
    labels = (await (await client.get("/decisions/l-1-0")).json())["labels"]
    assert [label["is_fraud"] for label in labels] == [True, False]


async def test_simultaneous_identical_labels_are_stored_once(client: Any) -> None:
    await client.post("/score", json=_tx(0, day=1))
    label = {"transaction_id": "l-1-0", "is_fraud": True}
    response = await client.post("/labels", json={"labels": [label] * 5})
    results = (await response.json())["results"]
    assert sorted(r["outcome"] for r in results) == ["applied"] + ["unchanged"] * 4
    labels = (await (await client.get("/decisions/l-1-0")).json())["labels"]
    assert len(labels) == 1


async def test_label_for_an_unknown_transaction_is_404(client: Any) -> None:
    response = await client.post("/labels", json={"transaction_id": "ghost", "is_fraud": True})
    assert response.status == 404
    assert "ghost" in (await response.json())["error"]["message"]


async def test_label_batch_reports_each_item(client: Any) -> None:
    await client.post("/score", json=_tx(0, day=1))
    body = {
        "labels": [
            {"transaction_id": "l-1-0", "is_fraud": True, "labelled_at": "2025-06-20T09:00:00Z"},
            {"transaction_id": "ghost", "is_fraud": True},
            {"transaction_id": "l-1-0"},
        ]
    }
    results = (await (await client.post("/labels", json=body)).json())["results"]
    assert results[0] == {"transaction_id": "l-1-0", "outcome": "applied"}
    assert results[1]["error"]["type"] == "not_found"
    assert results[2]["error"]["fields"][0]["field"] == "labels.2.is_fraud"


async def test_label_older_than_every_window_is_recorded(client: Any) -> None:
    await client.post("/score", json=_tx(0, day=1))
    late = {**_tx(0, day=1), "transaction_id": "late", "timestamp": "2025-08-20T10:00:00+00:00"}
    await client.post("/score", json=late)
    # Two months on, no window can see the first payment; the engine's periodic sweep
    # (every few thousand payments) forgets it; run that sweep now.
    client.app[SCORER].engine.expire(Transaction.model_validate(late).epoch_ms)
    response = await client.post("/labels", json={"transaction_id": "l-1-0", "is_fraud": True})
    assert response.status == 200
    assert (await response.json())["outcome"] == "recorded"
    labels = (await (await client.get("/decisions/l-1-0")).json())["labels"]
    assert len(labels) == 1


async def test_readyz_reports_the_model(client: Any) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready" and body["model_version"].startswith("fast-")


async def test_a_store_that_cannot_write_makes_the_service_unready_and_refuse(
    client: Any, transaction: dict
) -> None:
    # A closed store refuses writes the way a failed disk does, as any user (even root,
    # for whom a read-only file would still be writable).
    client.app[SCORER].store.close()
    response = await client.get("/readyz")
    assert response.status == 503
    assert "audit store" in (await response.json())["error"]["message"]
    refused = await client.post("/score", json=transaction)
    assert refused.status == 503
    assert (await refused.json())["error"]["type"] == "audit_unavailable"
    assert (await client.get(f"/decisions/{transaction['transaction_id']}")).status == 503
    # Not recorded, so not answered: the file holds no decision for it.
    with SQLiteAuditStore(client.app[SCORER].store.path) as reopened:
        assert reopened.get(transaction["transaction_id"]) is None


async def test_metrics_count_decisions_and_time_every_stage(client: Any, transaction: dict) -> None:
    await client.post("/score", json=transaction)
    await client.post("/score", json=transaction)  # a replay is not a second decision
    await client.post("/score", json={**transaction, "amount": -1})
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    decided = [k for k in samples if k.startswith("riskscore_decisions_total{")]
    assert sum(samples[k] for k in decided) == 1.0
    for stage in ("features", "model", "explain", "store"):
        assert samples[f'riskscore_stage_duration_seconds_count{{stage="{stage}"}}'] == 1.0
    assert samples['riskscore_http_requests_total{route="/score",status="200"}'] == 2.0
    assert samples['riskscore_http_requests_total{route="/score",status="422"}'] == 1.0
    for reason in ("budget", "timeout", "error"):
        assert samples[f'riskscore_fallbacks_total{{reason="{reason}"}}'] == 0.0
    assert all(name.startswith("riskscore_") for name in samples)
