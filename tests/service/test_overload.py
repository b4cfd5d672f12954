"""Overload: a saturated service refuses with 429 + Retry-After before scoring anything.

Saturation is made deterministic, not raced: a gate holds every payment the scorer is
handed, so the admitted ones stay queued for as long as the test wants, and the service
time per decision is the configured prior (no answer has measured it yet).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import SCORER
from service.in_flight import Scored
from service.scorer import Scorer, ScoreRequest
from tests.service.conftest import API_KEY, ClientFactory

# 100 ms per decision assumed, 950 ms of budget: nine queued payments (900 ms) fit, a tenth
# (1,000 ms) does not — with 50 ms to spare for the time a request spends before it is
# weighed. (Below eight queued nothing is shed at all: service/admission.py.)
SERVICE_MS = 100.0
DEADLINE = {"X-Deadline-Ms": "950"}
HELD = 9
# A failing test must not hang: on code without shedding the refused request is held too.
GUARD_S = 30.0


class Gate:
    """Holds every payment handed to the scorer until opened; counts those held."""

    def __init__(self, scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
        self._submit = scorer.submit
        self.opened = asyncio.Event()
        self.held = 0
        self._changed = asyncio.Event()
        monkeypatch.setattr(scorer, "submit", self.submit)

    def submit(self, requests: list[ScoreRequest]) -> list[asyncio.Future[Scored]]:
        self.held += len(requests)
        self._changed.set()
        batch = asyncio.ensure_future(self._later(requests))
        return [asyncio.ensure_future(_pick(batch, k)) for k in range(len(requests))]

    async def _later(self, requests: list[ScoreRequest]) -> list[Scored]:
        await self.opened.wait()
        return list(await asyncio.gather(*self._submit(requests)))

    async def holding(self, count: int) -> None:
        while self.held < count:
            self._changed.clear()
            await self._changed.wait()


async def _pick(batch: asyncio.Future[list[Scored]], k: int) -> Scored:
    return (await batch)[k]


def _tx(transaction: dict[str, Any], n: int) -> dict[str, Any]:
    return {**transaction, "transaction_id": f"tx-overload-{n}"}


async def _shed_count(client: TestClient[Any, web.Application], reason: str) -> float:
    text = await (await client.get("/metrics")).text()
    line = next(
        x for x in text.splitlines() if x.startswith(f'riskscore_shed_total{{reason="{reason}"')
    )
    return float(line.split()[-1])


async def test_a_saturated_service_answers_429_without_scoring_or_recording(
    make_client: ClientFactory, transaction: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(admission_service_ms=SERVICE_MS)
    scorer = client.app[SCORER]
    gate = Gate(scorer, monkeypatch)
    admitted = [
        asyncio.ensure_future(client.post("/score", json=_tx(transaction, n), headers=DEADLINE))
        for n in range(HELD)
    ]
    await asyncio.wait_for(gate.holding(HELD), GUARD_S)

    refused = await asyncio.wait_for(
        client.post("/score", json=_tx(transaction, 100), headers=DEADLINE), GUARD_S
    )
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    error = (await refused.json())["error"]
    assert error["type"] == "overloaded" and "budget" in error["message"]
    batch = await asyncio.wait_for(
        client.post(
            "/score/batch",
            json={"transactions": [_tx(transaction, 101), _tx(transaction, 102)]},
            headers=DEADLINE,
        ),
        GUARD_S,
    )
    assert batch.status == 429 and "Retry-After" in batch.headers
    assert gate.held == HELD  # nothing of the refused requests reached the scorer

    gate.opened.set()
    assert [r.status for r in await asyncio.gather(*admitted)] == [200] * HELD
    for n in (100, 101, 102):
        tid = f"tx-overload-{n}"
        assert not scorer.engine.seen(tid)  # the feature state never saw it
        assert scorer.store.get(tid) is None  # nor the audit store
    assert await _shed_count(client, "deadline") == 2.0
    # Nothing was taken, so the same payment is simply scored once there is room.
    again = await client.post("/score", json=_tx(transaction, 100), headers=DEADLINE)
    assert again.status == 200 and "Idempotent-Replayed" not in again.headers


async def test_not_ready_stays_503_under_overload(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    client = await make_client(admission_service_ms=SERVICE_MS)
    client.app[SCORER].warmed = False
    answer = await client.post("/score", json=_tx(transaction, 1), headers={"X-Deadline-Ms": "1"})
    assert answer.status == 503


async def test_with_admission_control_off_nothing_is_shed(
    make_client: ClientFactory, transaction: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(admission_service_ms=SERVICE_MS, admission_control=False)
    gate = Gate(client.app[SCORER], monkeypatch)
    answers = [
        asyncio.ensure_future(client.post("/score", json=_tx(transaction, n), headers=DEADLINE))
        for n in range(HELD + 3)
    ]
    await asyncio.wait_for(gate.holding(HELD + 3), GUARD_S)  # all of them reached the scorer
    gate.opened.set()
    assert [r.status for r in await asyncio.gather(*answers)] == [200] * (HELD + 3)


async def test_an_api_key_over_its_rate_gets_429(
    make_client: ClientFactory, transaction: dict[str, Any]
) -> None:
    other = "o" * 24
    # One payment per 100 s: the first passes, the next is over the rate for ~100 s.
    client = await make_client(api_keys=(API_KEY, other), api_key_rates=((API_KEY, 0.01),))
    key = {"X-API-Key": API_KEY}
    assert (await client.post("/score", json=_tx(transaction, 1), headers=key)).status == 200
    over = await client.post("/score", json=_tx(transaction, 2), headers=key)
    assert over.status == 429
    assert 90 <= int(over.headers["Retry-After"]) <= 100
    assert (await over.json())["error"]["type"] == "rate_limited"
    assert client.app[SCORER].store.get("tx-overload-2") is None
    # Another key has its own (here: no) limit.
    other_key = {"X-API-Key": other}
    assert (await client.post("/score", json=_tx(transaction, 3), headers=other_key)).status == 200
    assert await _shed_count(client, "rate_limit") == 1.0
    assert await _shed_count(client, "deadline") == 0.0
