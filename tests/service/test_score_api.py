"""POST /score, /score/batch and GET /decisions as a payment backend uses them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from features.definitions import feature_names
from models.artifact_paths import default_artifact_dir
from models.fast import FastModel
from tests.service.conftest import ClientFactory

DECISION_FIELDS = {
    "transaction_id",
    "score",
    "action",
    "stage",
    "fallback",
    "fallback_reason",
    "reasons",
    "model_version",
    "latency_ms",
    "decided_at",
}


def _tx(i: int, **changes: Any) -> dict[str, Any]:
    base = {
        "transaction_id": f"tx-{i:05d}",
        "timestamp": f"2025-06-{1 + i // 1000:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00+00:00",
        "customer_id": f"c-{i % 7}",
        "terminal_id": f"t-{i % 11}",
        "amount": 10.0 + 3.7 * (i % 50),
    }
    return {**base, **changes}


async def test_score_returns_a_complete_decision(client: Any, transaction: dict) -> None:
    response = await client.post("/score", json=transaction)
    assert response.status == 200
    body = await response.json()
    assert set(body) == DECISION_FIELDS
    assert body["transaction_id"] == transaction["transaction_id"]
    assert 0.0 <= body["score"] <= 1.0
    assert body["action"] in ("approve", "review", "decline")
    assert body["stage"] == "fast" and body["fallback"] is False
    model = FastModel.load(default_artifact_dir())
    assert body["model_version"] == model.version
    assert body["action"] == model.thresholds.action(body["score"])
    assert 1 <= len(body["reasons"]) <= 3
    for reason in body["reasons"]:
        assert reason["code"] in feature_names()
        assert reason["direction"] == ("raises" if reason["contribution"] > 0 else "lowers")
        assert reason["text"]
    sizes = [abs(r["contribution"]) for r in body["reasons"]]
    assert sizes == sorted(sizes, reverse=True)


async def test_full_explanation_adds_up_to_the_models_raw_score(
    client: Any, transaction: dict
) -> None:
    response = await client.post("/score?explain=full", json=transaction)
    body = await response.json()
    assert set(body["shap"]) == set(feature_names())
    assert body["base_value"] + sum(body["shap"].values()) == pytest.approx(
        body["raw_score"], abs=1e-9
    )
    assert 1.0 / (1.0 + np.exp(-body["raw_score"])) == pytest.approx(body["score"], abs=1e-12)


async def test_full_explanation_by_header(client: Any, transaction: dict) -> None:
    response = await client.post("/score", json=transaction, headers={"X-Explain": "full"})
    assert "shap" in await response.json()


async def test_decision_holds_every_feature_and_matches_the_model(
    client: Any, transaction: dict
) -> None:
    await client.post("/score", json=transaction)
    response = await client.get(f"/decisions/{transaction['transaction_id']}")
    assert response.status == 200
    record = await response.json()
    explanation = record["explanation"]
    names = [a["feature"] for a in explanation["attributions"]]
    assert names == feature_names()
    values = np.array([[a["value"] for a in explanation["attributions"]]])
    model = FastModel.load(default_artifact_dir())
    # The stored values reproduce the stored raw score on the model that decided.
    assert model.predict_raw(values)[0] == pytest.approx(explanation["raw_score"], abs=1e-12)
    total = explanation["base_value"] + sum(a["contribution"] for a in explanation["attributions"])
    assert total == pytest.approx(explanation["raw_score"], abs=1e-9)
    assert record["thresholds"] == {
        "review": model.thresholds.review,
        "decline": model.thresholds.decline,
    }
    assert set(record["timings_ms"]) == {"features", "model", "explain"}
    assert record["transaction"]["amount"] == transaction["amount"]
    assert record["labels"] == []


async def test_unknown_decision_is_404_with_the_error_shape(client: Any) -> None:
    response = await client.get("/decisions/never-seen")
    assert response.status == 404
    assert (await response.json())["error"]["type"] == "not_found"


async def test_features_follow_the_customers_history(client: Any) -> None:
    # Three payments of one customer: the 1-day count feature counts them.
    shap_counts = []
    for i in range(3):
        tx = _tx(i, customer_id="c-same", timestamp=f"2025-06-01T10:0{i}:00+00:00")
        await client.post("/score", json=tx)
        record = await (await client.get(f"/decisions/{tx['transaction_id']}")).json()
        values = {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}
        shap_counts.append(values["CUSTOMER_ID_NB_TX_1DAY_WINDOW"])
    assert shap_counts == [1.0, 2.0, 3.0]


async def test_batch_scores_like_single_requests(make_client: ClientFactory, tmp_path: Any) -> None:
    txs = [_tx(i) for i in range(40)]
    # A roomy budget: in-band payments are decided by the second stage either way.
    roomy = {"X-Deadline-Ms": "60000"}
    batch_client = await make_client(data_dir=tmp_path / "batch")
    response = await batch_client.post("/score/batch", json={"transactions": txs}, headers=roomy)
    assert response.status == 200
    batch = (await response.json())["results"]
    single_client = await make_client(data_dir=tmp_path / "single")
    singles = [
        await (await single_client.post("/score", json=tx, headers=roomy)).json() for tx in txs
    ]
    assert [r["stage"] for r in batch] == [s["stage"] for s in singles]
    assert [r["transaction_id"] for r in batch] == [t["transaction_id"] for t in txs]
    assert [r["score"] for r in batch] == pytest.approx([s["score"] for s in singles], abs=1e-12)
    assert [r["action"] for r in batch] == [s["action"] for s in singles]
    stored = await batch_client.get(f"/decisions/{txs[-1]['transaction_id']}")
    assert stored.status == 200


async def test_batch_reports_bad_items_and_scores_the_rest(client: Any) -> None:
    txs = [_tx(0), _tx(1, amount=-5), _tx(2), {"transaction_id": "broken"}]
    response = await client.post("/score/batch", json={"transactions": txs})
    assert response.status == 200
    results = (await response.json())["results"]
    assert [("error" in r) for r in results] == [False, True, False, True]
    bad = results[1]
    assert bad["index"] == 1 and bad["transaction_id"] == "tx-00001"
    assert bad["error"]["type"] == "validation_error"
    assert [f["field"] for f in bad["error"]["fields"]] == ["transactions.1.amount"]
    missing = {f["field"] for f in results[3]["error"]["fields"]}
    assert {"transactions.3.timestamp", "transactions.3.customer_id"} <= missing
    assert (await client.get("/decisions/tx-00002")).status == 200
    assert (await client.get("/decisions/tx-00001")).status == 404


async def test_batch_repeats_and_conflicts_inside_one_batch(client: Any) -> None:
    txs = [_tx(0), _tx(0), _tx(0, amount=999.0)]
    results = (await (await client.post("/score/batch", json={"transactions": txs})).json())[
        "results"
    ]
    assert results[0]["score"] == results[1]["score"]
    assert results[2]["error"]["type"] == "idempotency_conflict"


async def test_concurrent_requests_keep_the_feature_state_consistent(client: Any) -> None:
    txs = [_tx(i, customer_id="c-busy") for i in range(30)]
    responses = await asyncio.gather(*(client.post("/score", json=tx) for tx in txs))
    assert [r.status for r in responses] == [200] * 30
    counts = []
    for tx in txs:
        record = await (await client.get(f"/decisions/{tx['transaction_id']}")).json()
        values = {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}
        counts.append(values["CUSTOMER_ID_NB_TX_30DAY_WINDOW"])
    # Every payment counted exactly once, whatever order the requests were served in.
    assert sorted(counts) == [float(n) for n in range(1, 31)]


async def test_fast_and_reference_explainers_give_the_same_decision(
    make_client: ClientFactory, tmp_path: Any, transaction: dict
) -> None:
    bodies = {}
    for explainer, predictor in (("fast", "compiled"), ("lightgbm", "lightgbm")):
        client = await make_client(
            data_dir=tmp_path / explainer, explainer=explainer, predictor=predictor
        )
        await client.post("/score", json=transaction)
        response = await client.get(f"/decisions/{transaction['transaction_id']}")
        bodies[explainer] = (await response.json())["explanation"]
    fast, reference = bodies["fast"], bodies["lightgbm"]
    assert fast["method"] == "treeshap-fast" and reference["method"] == "treeshap-lightgbm"
    assert fast["raw_score"] == reference["raw_score"]
    assert fast["base_value"] == pytest.approx(reference["base_value"], abs=1e-9)
    for a, b in zip(fast["attributions"], reference["attributions"], strict=True):
        assert a["contribution"] == pytest.approx(b["contribution"], abs=1e-9)
