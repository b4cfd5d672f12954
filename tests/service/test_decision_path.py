"""The decision path's cost structure: no store read for a new id, micro-batches that
change nothing but the cost, and second-stage attributions computed when read."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from explain.audit.sqlite_store import SQLiteAuditStore
from features.schema import Transaction
from service.app_keys import SCORER
from service.micro_batch import MicroBatcher
from service.scorer import ScoreRequest
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import ROOMY, everything_in_band, tx

__all__ = ["everything_in_band"]  # a fixture, shared with the cascade tests


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], bool]]:
    """Every read of decisions by id: (ids, whether it ran on the main thread)."""
    reads: list[tuple[list[str], bool]] = []
    original = SQLiteAuditStore.get_many

    def spy(self: SQLiteAuditStore, ids: Any) -> Any:
        reads.append((list(ids), threading.current_thread() is threading.main_thread()))
        return original(self, ids)

    monkeypatch.setattr(SQLiteAuditStore, "get_many", spy)
    return reads


def payment(i: int, customer: str = "c-1", **changes: Any) -> dict[str, Any]:
    return tx(i, customer, **changes)


async def test_a_new_id_costs_no_read_of_the_audit_store(
    make_client: ClientFactory, store_reads: list[tuple[list[str], bool]]
) -> None:
    client = await make_client()
    for i in range(20):
        response = await client.post("/score", json=payment(i))
        assert response.status == 200
    assert store_reads == []  # the feature state vouched for every new id
    retry = await client.post("/score", json=payment(3))
    assert retry.headers.get("Idempotent-Replayed") == "true"
    # A retry of a decision already durable is looked up, once, off the event loop.
    assert store_reads == [([payment(3)["transaction_id"]], False)]


async def test_a_retry_after_a_restart_is_answered_from_the_store(
    make_client: ClientFactory, store_reads: list[tuple[list[str], bool]]
) -> None:
    first = await make_client()
    original = await (await first.post("/score", json=payment(0))).json()
    await first.close()
    again = await make_client()  # same data directory: rebuilt from the store
    response = await again.post("/score", json=payment(0))
    assert response.headers.get("Idempotent-Replayed") == "true"
    assert await response.json() == original
    conflict = await again.post("/score", json=payment(0, amount=1.0))
    assert conflict.status == 409
    assert all(not on_loop for _, on_loop in store_reads)


async def test_payments_older_than_the_state_remembers_are_looked_up(
    make_client: ClientFactory, store_reads: list[tuple[list[str], bool]]
) -> None:
    client = await make_client()
    assert (await client.post("/score", json=payment(0))).status == 200
    old = payment(1, timestamp="2025-03-01T08:00:00+00:00")  # 93 days before: past 37
    response = await client.post("/score", json=old)
    assert response.status == 200
    assert store_reads == [([old["transaction_id"]], False)]


async def test_without_a_warm_start_every_id_is_looked_up(
    make_client: ClientFactory, store_reads: list[tuple[list[str], bool]]
) -> None:
    first = await make_client()
    assert (await first.post("/score", json=payment(0))).status == 200
    await first.close()
    # The state is not rebuilt, so it cannot vouch that an id is new: the store decides.
    again = await make_client(warm_start=False)
    response = await again.post("/score", json=payment(0))
    assert response.headers.get("Idempotent-Replayed") == "true"
    assert (await again.post("/score", json=payment(1))).status == 200
    assert [ids for ids, _ in store_reads] == [
        [payment(0)["transaction_id"]],
        [payment(1)["transaction_id"]],
    ]


def _stream(n: int) -> list[Transaction]:
    customers = ["c-1", "c-2", "c-3"]
    return [Transaction.model_validate(payment(i, customers[i % 3])) for i in range(n)]


def _comparable(decision: Any) -> tuple[Any, ...]:
    return (
        decision.transaction_id,
        decision.score,
        decision.action,
        decision.stage,
        decision.values.tolist(),
        decision.contributions.tolist(),
        decision.reasons.json,
    )


async def test_one_loop_turn_is_one_batch_and_scores_as_one_by_one(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    txs = _stream(40)
    batched_client = await make_client(data_dir=tmp_path / "batched", sequence="off")
    scorer = batched_client.app[SCORER]
    batcher = MicroBatcher(scorer, max_batch=16)
    now = time.perf_counter()
    # All submitted within one turn of the loop: flushed as 16 + 16 + 8, in order.
    futures = [batcher.submit(ScoreRequest(t, now)) for t in txs]
    batched = await asyncio.gather(*futures)
    assert (batcher.batches, batcher.payments) == (3, 40)
    single_client = await make_client(data_dir=tmp_path / "single", sequence="off")
    one_by_one = [await single_client.app[SCORER].score(t) for t in txs]
    assert [_comparable(s.decision) for s in batched] == [
        _comparable(s.decision) for s in one_by_one
    ]


async def test_a_lone_request_is_a_batch_of_one(make_client: ClientFactory) -> None:
    client = await make_client(sequence="off")
    batcher = MicroBatcher(client.app[SCORER])
    (t,) = _stream(1)
    scored = await batcher.submit(ScoreRequest(t, time.perf_counter()))
    assert scored.decision.transaction_id == t.transaction_id
    assert (batcher.batches, batcher.payments) == (1, 1)


async def test_attributions_computed_when_read_equal_those_at_decision_time(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    scorer = client.app[SCORER]
    for i in range(5):
        assert (await client.post("/score", json=payment(i), headers=ROOMY)).status == 200
    last = Transaction.model_validate(payment(4))
    # What the stage saw when it decided the last payment (nothing came after it), and the
    # attribution computed from it as it used to be, on the request path.
    view = scorer.sequence_view(last.customer_id, last.epoch_ms)
    model = scorer._cascade.model
    ((_, effects),) = model.explain([view.values])
    record = await (await client.get(f"/decisions/{last.transaction_id}")).json()
    attributions = record["sequence"]["attributions"]
    assert [a["transaction_id"] for a in attributions] == [
        payment(i)["transaction_id"] for i in (3, 2, 1, 0)
    ]
    assert [a["contribution"] for a in attributions] == effects[::-1].tolist()
    assert [a["amount"] for a in attributions] == [payment(i)["amount"] for i in (3, 2, 1, 0)]
    assert np.all(np.isfinite([a["contribution"] for a in attributions]))


async def test_a_batch_of_payments_applied_but_never_recorded_is_refused_whole(
    make_client: ClientFactory,
) -> None:
    client = await make_client(sequence="off")
    scorer = client.app[SCORER]
    txs = _stream(3)
    for t in txs[:2]:
        scorer.engine.update(t)  # in the feature state, with no decision on record
    outcomes = await scorer.score_batch(txs[:2])
    assert [type(o).__name__ for o in outcomes] == ["IdempotencyConflict"] * 2
    (fresh,) = await scorer.score_batch(txs[2:])  # and the next batch is scored as usual
    assert fresh.decision.transaction_id == txs[2].transaction_id


async def test_a_payment_waiting_for_a_lookup_is_not_overtaken(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    # ``late`` is older than the state remembers ids for, so it waits for a store lookup;
    # ``after`` (same customer) arrives after it in the same call and must not overtake it.
    late = Transaction.model_validate(payment(1, timestamp="2025-03-20T08:00:00+00:00"))
    after = Transaction.model_validate(payment(7))
    history = [Transaction.model_validate(payment(i)) for i in (2, 3, 4)]

    together = (await make_client(data_dir=tmp_path / "together", sequence="off")).app[SCORER]
    for t in history:
        await together.score(t)
    batched = await together.score_batch([late, after])

    apart = (await make_client(data_dir=tmp_path / "apart", sequence="off")).app[SCORER]
    for t in history:
        await apart.score(t)
    in_turn = [await apart.score(late), await apart.score(after)]

    assert [_comparable(s.decision) for s in batched] == [  # type: ignore[union-attr]
        _comparable(s.decision) for s in in_turn
    ]


async def test_a_failure_while_a_lookup_waits_is_answered_and_frees_the_id(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await make_client(sequence="off")
    (stored, t) = _stream(2)
    await first.app[SCORER].score(stored)
    await first.close()
    # Not rebuilt from a store that holds decisions: every id is looked up.
    client = await make_client(sequence="off", warm_start=False)
    scorer = client.app[SCORER]
    real = scorer._fast_path.run
    calls = 0

    def fails_once(txs: list[Transaction], asked: list[bool] | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("transient failure")
        return real(txs, asked)

    monkeypatch.setattr(scorer._fast_path, "run", fails_once)
    with pytest.raises(RuntimeError, match="transient failure"):
        await asyncio.wait_for(scorer.score(t), 10)
    assert scorer.in_flight == 0
    retry = await asyncio.wait_for(scorer.score(t), 10)  # not stuck behind the failure
    assert retry.decision.transaction_id == t.transaction_id
    assert not retry.replayed


async def test_one_clients_tight_deadline_leaves_anothers_payment_to_the_stage(
    make_client: ClientFactory, everything_in_band: Path
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    scorer = client.app[SCORER]
    for i in range(3):
        await scorer.score(Transaction.model_validate(payment(i)), budget_ms=5000)
    batcher = MicroBatcher(scorer)
    now = time.perf_counter()
    tight = batcher.submit(ScoreRequest(Transaction.model_validate(payment(9, "c-9")), now, 0.5))
    roomy = batcher.submit(ScoreRequest(Transaction.model_validate(payment(3)), now, 5000))
    a, b = await asyncio.gather(tight, roomy)
    assert batcher.batches == 1  # one micro-batch, two budgets
    assert (a.decision.stage, a.decision.fallback_reason) == ("fast", "budget")
    assert (b.decision.stage, b.decision.fallback) == ("sequence", False)


async def test_a_stage_result_that_cannot_be_recorded_fails_its_request_not_hangs(
    make_client: ClientFactory, everything_in_band: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(sequence_model_dir=everything_in_band)
    scorer = client.app[SCORER]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cannot build")

    monkeypatch.setattr("service.second_stage.build_decision", broken)
    with pytest.raises(RuntimeError, match="cannot build"):
        await asyncio.wait_for(scorer.score(Transaction.model_validate(payment(0)), None, 5000), 10)
    assert scorer.in_flight == 0
