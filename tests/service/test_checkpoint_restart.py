"""A restart of the service on the in-process state loads the checkpoint written at
shutdown and replays only what came after it; a damaged one is passed over."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from explain.audit.sqlite_writer import SQLiteWriter
from service.app_keys import WARM_START
from service.checkpointing import CHECKPOINT_FILE
from tests.service.conftest import ClientFactory


def tx(i: int) -> dict[str, Any]:
    return {
        "transaction_id": f"ck-{i}",
        "timestamp": f"2025-06-0{1 + i}T12:00:00+00:00",
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "amount": 20.0 + i,
    }


def _features(record: dict[str, Any]) -> dict[str, float]:
    return {a["feature"]: a["value"] for a in record["explanation"]["attributions"]}


async def _restart_and_score(make_client: ClientFactory) -> tuple[int, dict[str, float]]:
    """Start again; the warm start's replayed count and the features of a new payment."""
    second = await make_client()
    replayed = await second.app[WARM_START]
    response = await second.post("/score", json=tx(3))
    assert response.status == 200, await response.json()
    record = await (await second.get("/decisions/ck-3")).json()
    await second.close()
    return replayed, _features(record)


async def _three_payments_then_stop(make_client: ClientFactory, tmp_path: Path) -> Path:
    """Three payments on a fresh service, stopped cleanly: the checkpoint it wrote."""
    first = await make_client()
    for i in range(3):
        assert (await first.post("/score", json=tx(i))).status == 200
    await first.close()  # writes the checkpoint at shutdown
    return tmp_path / "var" / CHECKPOINT_FILE


async def test_a_restart_loads_the_checkpoint_and_replays_nothing_before_it(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    checkpoint = await _three_payments_then_stop(make_client, tmp_path)
    assert checkpoint.exists()
    replayed, features = await _restart_and_score(make_client)
    # The three stored payments were in the checkpoint: none was applied again...
    assert replayed == 0
    # ...and the customer's history is whole.
    assert features["CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 4.0
    assert features["CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] == (20 + 21 + 22 + 23) / 4


async def test_a_damaged_checkpoint_is_passed_over_for_a_full_replay(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    checkpoint = await _three_payments_then_stop(make_client, tmp_path)
    data = bytearray(checkpoint.read_bytes())
    data[-50] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    replayed, features = await _restart_and_score(make_client)
    assert replayed == 3
    assert features["CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 4.0


async def test_no_checkpoint_is_written_when_switched_off(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    first = await make_client(checkpoint_interval_s=0)
    assert (await first.post("/score", json=tx(0))).status == 200
    await first.close()
    assert not (tmp_path / "var" / CHECKPOINT_FILE).exists()


async def test_a_payment_whose_record_failed_is_not_checkpointed(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint must never hold a payment the audit store lost: after a restart its
    # retry would be refused as already applied, and its decision would be gone.
    first = await make_client()
    for i in range(2):
        assert (await first.post("/score", json=tx(i))).status == 200
    real = SQLiteWriter._commit_transaction

    def full_disk(writer: SQLiteWriter) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SQLiteWriter, "_commit_transaction", full_disk)
    refused = await first.post("/score", json=tx(2))
    assert refused.status == 503  # decided, applied to the state, its record not durable
    await first.close()  # the shutdown's checkpoint would hold tx 2: it is not written
    assert not (tmp_path / "var" / CHECKPOINT_FILE).exists()
    monkeypatch.setattr(SQLiteWriter, "_commit_transaction", real)
    second = await make_client()
    assert await second.app[WARM_START] == 2  # a full replay of what is stored
    retried = await second.post("/score", json=tx(2))
    assert retried.status == 200, await retried.json()
    await second.close()


async def test_a_late_payment_written_after_the_checkpoint_is_replayed(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    # A payment days older than the checkpoint's latest, decided after it was written;
    # then a crash before the next checkpoint. The restart must still apply it: a replay
    # chosen by event time (the latest less an hour) left it out of every window.
    checkpoint = await _three_payments_then_stop(make_client, tmp_path)
    before_the_late_one = checkpoint.read_bytes()
    second = await make_client()
    await second.app[WARM_START]
    late = {**tx(0), "transaction_id": "ck-late", "timestamp": "2025-06-01T13:00:00+00:00"}
    assert (await second.post("/score", json=late)).status == 200
    await second.close()
    checkpoint.write_bytes(before_the_late_one)  # the crash: its checkpoint never written
    replayed, features = await _restart_and_score(make_client)
    assert replayed == 1
    assert features["CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 5.0
