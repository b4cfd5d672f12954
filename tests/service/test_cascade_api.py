"""The second stage through the HTTP API: which stage decided, fallbacks and their reasons,
the X-Deadline-Ms budget, fault injection, and the sequence explanation on record."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.definitions import feature_names
from models.band_override import band_widened_copy
from service.app_keys import SCORER
from tests.service.conftest import ClientFactory


@pytest.fixture
def everything_in_band(tmp_path: Path) -> Path:
    """The shipped student with its band widened to every score: each payment escalates.

    The manifest does not checksum itself, so editing the band keeps the files verified.
    """
    return band_widened_copy(tmp_path / "sequence")


# A generous budget where a test needs the stage to decide: a loaded machine must not turn
# the expected outcome into a timeout.
ROOMY = {"X-Deadline-Ms": "5000"}


def tx(i: int, customer: str = "c-1", **changes: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"seq-{customer}-{i:04d}",
        "timestamp": f"2025-06-02T{8 + i // 60:02d}:{i % 60:02d}:00+00:00",
        "customer_id": customer,
        "terminal_id": f"t-{i % 3}",
        "amount": 20.0 + 7.5 * i,
        **changes,
    }


async def test_in_band_payments_are_decided_by_the_sequence_stage_and_explained(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    for i in range(4):
        response = await client.post("/score", json=tx(i), headers=ROOMY)
        body = await response.json()
        assert response.status == 200, body
        assert body["stage"] == "sequence"
        assert body["fallback"] is False and body["fallback_reason"] is None
    record = await (await client.get(f"/decisions/{tx(3)['transaction_id']}")).json()
    sequence = record["sequence"]
    assert sequence["method"] == "occlusion"
    assert record["score"] != sequence["fast_score"]  # the combination moved it
    # The earlier three payments of this customer, newest first, each with its effect.
    assert [a["transaction_id"] for a in sequence["attributions"]] == [
        tx(i)["transaction_id"] for i in (2, 1, 0)
    ]
    assert all(isinstance(a["contribution"], float) for a in sequence["attributions"])
    assert "sequence" in record["timings_ms"]
    # The fast path's exact SHAP is still there and still adds up to its own raw score.
    explanation = record["explanation"]
    total = explanation["base_value"] + sum(a["contribution"] for a in explanation["attributions"])
    assert total == pytest.approx(explanation["raw_score"], abs=1e-9)


async def test_out_of_band_payments_stay_on_the_fast_path(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    target = band_widened_copy(tmp_path / "narrow", low=0.999998, high=0.999999)
    client = await make_client(sequence_model_dir=target)
    body = await (await client.post("/score", json=tx(0))).json()
    assert (body["stage"], body["fallback"], body["fallback_reason"]) == ("fast", False, None)


async def test_a_budget_too_small_falls_back_with_reason_budget(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    response = await client.post("/score", json=tx(0), headers={"X-Deadline-Ms": "1"})
    body = await response.json()
    assert (body["stage"], body["fallback"], body["fallback_reason"]) == ("fast", True, "budget")
    record = await (await client.get(f"/decisions/{tx(0)['transaction_id']}")).json()
    assert record["fallback_reason"] == "budget" and record["sequence"] is None


async def test_a_stage_slower_than_the_budget_is_not_waited_for(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(
        sequence_model_dir=everything_in_band, sequence_fault_delay_ms=2000.0
    )
    reasons = []
    for i in range(3):
        sent = time.perf_counter()
        body = await (await client.post("/score", json=tx(i))).json()
        waited_ms = (time.perf_counter() - sent) * 1000.0
        assert body["stage"] == "fast" and body["fallback"] is True
        # Answered around the 50 ms deadline, never after the 2 s delay.
        assert waited_ms < 1000.0
        reasons.append(body["fallback_reason"])
    # The first is admitted and times out; once the stage is known to be slow, the next
    # ones are refused up front (or, after a second, probed once and timed out again).
    assert reasons[0] == "timeout" and set(reasons[1:]) <= {"budget", "timeout"}
    metrics = await (await client.get("/metrics")).text()
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("riskscore_fallbacks_total{")
    )
    assert counted == 3.0


async def test_a_failing_stage_falls_back_with_reason_error(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band, sequence_fault_error_rate=1.0)
    body = await (await client.post("/score", json=tx(0))).json()
    assert (body["stage"], body["fallback"], body["fallback_reason"]) == ("fast", True, "error")


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "1e9"])
async def test_a_bad_deadline_header_is_refused(
    make_client: ClientFactory, everything_in_band: Path, value: str
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    response = await client.post("/score", json=tx(0), headers={"X-Deadline-Ms": value})
    assert response.status == 422
    body = await response.json()
    assert body["error"]["fields"][0]["field"] == "X-Deadline-Ms"


async def test_a_retry_during_the_second_stage_gets_the_same_decision(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    # The stage takes 100 ms, well inside a 5 s budget: both copies are in flight at once.
    client = await make_client(sequence_model_dir=everything_in_band, sequence_fault_delay_ms=100.0)
    headers = {"X-Deadline-Ms": "5000"}
    first, second = await asyncio.gather(
        client.post("/score", json=tx(0), headers=headers),
        client.post("/score", json=tx(0), headers=headers),
    )
    a, b = await first.json(), await second.json()
    assert first.status == second.status == 200
    assert a == b and a["stage"] == "sequence"
    replayed = [r.headers.get("Idempotent-Replayed") for r in (first, second)]
    assert replayed.count("true") == 1


async def test_batches_escalate_their_in_band_items_together(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    items = [tx(i, customer=f"c-{i % 2}") for i in range(6)]
    response = await client.post("/score/batch", json={"transactions": items}, headers=ROOMY)
    results = (await response.json())["results"]
    assert [r["stage"] for r in results] == ["sequence"] * 6
    assert [r["transaction_id"] for r in results] == [t["transaction_id"] for t in items]
    # Each item's sequence ends with itself: a later payment of the same customer in the
    # batch is not in an earlier one's sequence.
    for i, item in enumerate(items):
        record = await (await client.get(f"/decisions/{item['transaction_id']}")).json()
        earlier = [a["transaction_id"] for a in record["sequence"]["attributions"]]
        assert earlier == [
            t["transaction_id"] for t in items[:i][::-1] if t["customer_id"] == item["customer_id"]
        ]


async def test_a_restart_rebuilds_sequences_as_they_were_decided(
    make_client: ClientFactory, everything_in_band: Path, tmp_path: Path
) -> None:
    # Payments of one customer at one terminal over three weeks, some labelled fraud: the
    # terminal's risk features (behind a 7-day label delay) differ from zero only where
    # labels were known when each payment was decided.
    first = await make_client(sequence_model_dir=everything_in_band)
    scorer = first.app[SCORER]
    stamps = []
    for i in range(24):
        ts = np.datetime64("2025-05-01T10:00") + np.timedelta64(i * 21, "h")
        body = tx(i, timestamp=f"{ts}:00+00:00", terminal_id="t-x")
        await first.post("/score", json=body, headers=ROOMY)
        stamps.append(int(ts.astype("datetime64[ms]").astype(np.int64)))
        if i % 5 == 0:
            await first.post(
                "/labels", json={"transaction_id": body["transaction_id"], "is_fraud": True}
            )
    before = scorer.sequence_view("c-1", stamps[-1])
    assert before is not None
    risk = [i for i, n in enumerate(feature_names()) if n.startswith("TERMINAL_ID_RISK")]
    assert before.values[:, risk].max() > 0  # label-dependent values are in the sequence
    await first.close()
    second = await make_client(sequence_model_dir=everything_in_band)
    after = second.app[SCORER].sequence_view("c-1", stamps[-1])
    assert after is not None and after.transaction_ids == before.transaction_ids
    np.testing.assert_allclose(after.values, before.values, rtol=1e-12)


async def test_the_second_stage_can_be_switched_off(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band, sequence="off")
    body = await (await client.post("/score", json=tx(0))).json()
    assert (body["stage"], body["fallback"], body["fallback_reason"]) == ("fast", False, None)
