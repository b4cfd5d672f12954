"""The compact audit record is lossless: what the store gives back is the decision made.

Real decisions (the shipped model through a real ``Scorer``, with and without the second
stage) are written to a real ``SQLiteAuditStore``; each one read back must equal
``to_record(decision)`` exactly, and more than equal where pydantic's equality is lenient:
the timestamp keeps its offset (aware datetimes compare equal across offsets), the
canonical JSON still hashes to ``request_sha256``, timings and latency are the very same
floats, reason texts are the texts the API answered with, and a replay from the stored
record answers byte for byte as the original did. And the record is small.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from explain.audit.sqlite_store import SQLiteAuditStore
from explain.decision import Decision, from_record, response_json, to_record
from features.data import frame_from_pandas
from features.schema import Transaction, decode_model
from features.simulator import SimulationConfig, simulate
from models.artifact_paths import default_artifact_dir
from models.fast import ModelSlot
from service.app import build_cascade
from service.scorer import Scored, Scorer
from service.settings import Settings

PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE_THIRTY = timezone(-timedelta(hours=5, minutes=30))
# A budget no second-stage run can miss on a loaded machine, and one none can meet.
ROOMY_MS = 5000.0
NO_TIME_MS = 0.001
MAX_BYTES_PER_DECISION = 1200


@pytest.fixture(scope="module")
def models() -> ModelSlot:
    slot = ModelSlot()
    slot.swap(default_artifact_dir())
    return slot


def with_clock(payload: dict[str, Any], i: int) -> dict[str, Any]:
    """The payment with its timestamp written one of five ways, most with microseconds.

    The microseconds stay below a millisecond, so event order and ``epoch_ms`` are kept.
    """
    instant = datetime.fromisoformat(str(payload["timestamp"]))
    precise = instant + timedelta(microseconds=1 + (i * 7919) % 999)
    written = [
        precise.astimezone(PLUS_TWO).isoformat(),
        precise.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        precise.astimezone(UTC).replace(tzinfo=None).isoformat(),  # no offset: UTC
        precise.astimezone(MINUS_FIVE_THIRTY).isoformat(),
        str(payload["timestamp"]),  # as the simulator writes it: +00:00, whole ms
    ][i % 5]
    changed = {**payload, "timestamp": written}
    if i % 3 == 0:
        changed["currency"] = "EUR"
    return changed


@pytest.fixture(scope="module")
def payments() -> list[Transaction]:
    """~950 simulated payments over 10 days, decoded from JSON bodies as the API does."""
    config = SimulationConfig(customers=40, terminals=80, days=10, start=date(2025, 1, 1), seed=3)
    frame = frame_from_pandas(simulate(config), source="simulated")
    return [
        decode_model(Transaction, json.dumps(with_clock(p, i)).encode())
        for i, p in enumerate(frame.payloads())
    ]


async def score(scorer: Scorer, txs: list[Transaction], no_time_every: int = 0) -> list[Decision]:
    """Decide the payments as the service does: singles and micro-batches of several
    sizes; every ``no_time_every``-th of them gets no time for the second stage."""
    scorer.warm_start(from_store=True)
    decisions: list[Decision] = []
    done = 0
    for n, size in enumerate(itertools.cycle((1, 1, 5, 1, 25))):
        if done >= len(txs):
            break
        chunk = txs[done : done + size]
        done += len(chunk)
        budget = NO_TIME_MS if no_time_every and n % no_time_every == 0 else None
        if size == 1:
            results = [await scorer.score(chunk[0], budget_ms=budget)]
        else:
            results = list(await scorer.score_batch(chunk, budget_ms=budget))
        for result in results:
            assert isinstance(result, Scored) and not result.replayed
            decisions.append(result.decision)
    assert len(decisions) == len(txs)
    await scorer.drain(30.0)
    return decisions


def reasons_answered(decision: Decision) -> list[dict[str, Any]]:
    """The reasons exactly as the /score answer carried them."""
    items: list[dict[str, Any]] = msgspec.json.decode(decision.reasons.json)
    return items


def assert_lossless(store: SQLiteAuditStore, decisions: list[Decision]) -> None:
    stored = store.get_many([d.transaction_id for d in decisions])
    assert len(stored) == len(decisions)
    for decision in decisions:
        record = stored[decision.transaction_id]
        expected = to_record(decision)
        assert record == expected, decision.transaction_id
        # As text too: pydantic's == lets an aware timestamp change its offset.
        assert record.model_dump_json() == expected.model_dump_json()
        tx = record.transaction
        assert tx.timestamp.isoformat() == decision.transaction.timestamp.isoformat()
        assert tx.canonical_json == decision.transaction.canonical_json
        assert hashlib.sha256(tx.canonical_json).hexdigest() == record.request_sha256
        assert record.request_sha256 == decision.request_sha256
        assert (tx.epoch_ms, tx.local_epoch_ms) == (
            decision.transaction.epoch_ms,
            decision.transaction.local_epoch_ms,
        )
        # The very same floats, bit for bit.
        assert {k: v.hex() for k, v in record.timings_ms.items()} == {
            k: v.hex() for k, v in decision.timings_ms.items()
        }
        assert record.latency_ms.hex() == decision.latency_ms.hex()
        assert [r.model_dump() for r in record.reasons] == reasons_answered(decision)
        # A retry is answered from the stored record: byte for byte the first answer.
        replay = from_record(record)
        assert response_json(replay) == response_json(decision)
        assert response_json(replay, full=True) == response_json(decision, full=True)
    one = decisions[len(decisions) // 2]
    assert store.get(one.transaction_id) == to_record(one)


def assert_every_clock_was_scored(decisions: list[Decision]) -> None:
    # The comparison means something only if each way of writing time was stored.
    offsets = {d.transaction.timestamp.utcoffset() for d in decisions}
    assert {None, timedelta(0), timedelta(hours=2), -timedelta(hours=5, minutes=30)} <= offsets
    canonical = [json.loads(d.transaction.canonical_json)["timestamp"] for d in decisions]
    assert any(t.endswith("Z") for t in canonical)
    assert any(d.transaction.timestamp.microsecond % 1000 for d in decisions)
    assert {d.transaction.currency for d in decisions} == {None, "EUR"}


async def test_fast_path_decisions_read_back_exactly(
    tmp_path: Path, models: ModelSlot, payments: list[Transaction]
) -> None:
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        decisions = await score(Scorer(models, store), payments[:400])
        store.flush()
        assert_every_clock_was_scored(decisions)
        # Read by the store that wrote them (explanation schema known from the write) ...
        assert_lossless(store, decisions)
    # ... and by a fresh one (schema read from the file).
    with SQLiteAuditStore(path) as store:
        assert_lossless(store, decisions)


async def test_second_stage_decisions_read_back_exactly(
    tmp_path: Path, models: ModelSlot, payments: list[Transaction]
) -> None:
    settings = Settings.of(data_dir=tmp_path / "var", kafka="off")
    cascade = build_cascade(settings, models.model.version)
    assert cascade is not None
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        scorer = Scorer(models, store, cascade=cascade, budget_ms=ROOMY_MS)
        decisions = await score(scorer, payments[:400], no_time_every=3)
        store.flush()
        kinds = {(d.stage, d.fallback, d.fallback_reason) for d in decisions}
        # Decided by each stage, and fallen back for lack of time: all three are stored.
        assert {("fast", False, None), ("sequence", False, None), ("fast", True, "budget")} <= kinds
        assert any(d.sequence is not None and d.sequence.earlier_ids for d in decisions)
        assert_lossless(store, decisions)
        for decision in decisions:
            if decision.sequence is None:
                continue
            # The store keeps which earlier payments the stage looked at; their effects
            # are computed when read (left unresolved by the store itself).
            stored = store.get(decision.transaction_id)
            assert stored is not None and stored.sequence is not None
            attributions = stored.sequence.attributions
            assert [a["transaction_id"] for a in attributions] == list(
                decision.sequence.earlier_ids
            )
            assert all(a["contribution"] is None for a in attributions)
    with SQLiteAuditStore(path) as store:
        assert_lossless(store, decisions)
    per_decision = checkpointed_size(path) / len(decisions)
    assert per_decision < MAX_BYTES_PER_DECISION, f"{per_decision:.0f} bytes per decision"


def checkpointed_size(path: Path) -> int:
    """The file's size with everything in it (the write-ahead log folded in and emptied)."""
    with closing(sqlite3.connect(path)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    return path.stat().st_size


async def test_a_decision_takes_less_than_1200_bytes_on_disk(
    tmp_path: Path, models: ModelSlot, payments: list[Transaction]
) -> None:
    path = tmp_path / "audit.sqlite3"
    with SQLiteAuditStore(path) as store:
        decisions = await score(Scorer(models, store), payments)
    assert len(decisions) > 900
    per_decision = checkpointed_size(path) / len(decisions)
    assert per_decision < MAX_BYTES_PER_DECISION, f"{per_decision:.0f} bytes per decision"


def test_a_utc_offset_with_seconds_is_refused() -> None:
    """ISO 8601 offsets may carry seconds ("+02:00:30"), but the canonical JSON that is
    stored (and matched on retries) keeps hours and minutes only: such a timestamp would
    be stored 30 s off, so it is refused rather than silently moved."""
    body = (
        b'{"transaction_id":"odd-offset","timestamp":"2025-01-05T12:00:00+02:00:30",'
        b'"customer_id":"c-1","terminal_id":"t-1","amount":12.5}'
    )
    with pytest.raises(ValidationError, match="not whole minutes"):
        decode_model(Transaction, body)
    whole = body.replace(b"+02:00:30", b"+05:45")  # Nepal: whole minutes are kept
    assert decode_model(Transaction, whole).timestamp.isoformat().endswith("+05:45")
