"""A real audit store, filled once per session by the real scorer through the real API,
copied into each test's own directory so that tests can add to it independently."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from explain.audit import compact
from explain.records import DecisionRecord
from explain.schema import ExplanationSchema
from service.app import WARM_START, create_app
from service.settings import AUDIT_FILE, Settings
from tests.reports.history import batches, payloads, score_all

SCORING_KEY = "s" * 24
COMPLIANCE_KEY = "c" * 24
# Every fifth payment gets its label back, as chargebacks would arrive for some only.
LABEL_EVERY = 5


@dataclass(frozen=True)
class Filled:
    """The filled store's file and what was sent to it."""

    audit_file: Path
    labels: dict[str, bool]


async def _fill(data_dir: Path) -> dict[str, bool]:
    app = create_app(Settings.of(data_dir=data_dir, kafka="off"))
    transactions, truth = payloads()
    async with TestClient(TestServer(app)) as client:
        await app[WARM_START]
        actions = await score_all(client, transactions)
        assert set(actions) == {tx["transaction_id"] for tx in transactions}
        sent = {tid: fraud for i, (tid, fraud) in enumerate(truth.items()) if i % LABEL_EVERY == 0}
        labels = [{"transaction_id": tid, "is_fraud": fraud} for tid, fraud in sent.items()]
        for batch in batches(labels):
            assert (await client.post("/labels", json={"labels": batch})).status == 200
    return sent


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    data_dir = tmp_path_factory.mktemp("filled")
    labels = asyncio.run(_fill(data_dir))
    return Filled(data_dir / AUDIT_FILE, labels)


@pytest.fixture
def data_dir(filled: Filled, tmp_path: Path) -> Path:
    target = tmp_path / "var"
    target.mkdir()
    shutil.copyfile(filled.audit_file, target / AUDIT_FILE)
    return target


def stored_records(audit_file: Path) -> list[DecisionRecord]:
    """Every stored decision, read straight from the file (not through the store's queries,
    only its record codec), newest event first, ties by transaction id descending."""
    columns = compact.COLUMNS
    with sqlite3.connect(audit_file) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(columns)}, record_json, record FROM decisions"
        ).fetchall()
        schemas = {
            schema_id: ExplanationSchema.from_json(text)
            for schema_id, text in conn.execute("SELECT id, schema_json FROM explanation_schemas")
        }
    records = []
    for row in rows:
        if row[-2]:
            records.append(DecisionRecord.model_validate_json(row[-2]))
        else:
            stored = compact.decode(row[-1])
            named = dict(zip(columns, row[:-2], strict=True))
            records.append(compact.to_record(named, stored, schemas[stored.schema_id]))
    return sorted(records, key=lambda r: (r.transaction.epoch_ms, r.transaction_id), reverse=True)


@pytest.fixture
async def report_client(aiohttp_client: Any, data_dir: Path) -> TestClient[Any, web.Application]:
    """The service on a copy of the filled store, with a scoring and a compliance key."""
    settings = Settings.of(
        data_dir=data_dir,
        kafka="off",
        api_keys=(SCORING_KEY,),
        compliance_api_keys=(COMPLIANCE_KEY,),
    )
    app = create_app(settings)
    client: TestClient[Any, web.Application] = await aiohttp_client(app)
    await app[WARM_START]
    return client


def as_compliance() -> dict[str, str]:
    return {"X-API-Key": COMPLIANCE_KEY}


def as_scoring() -> dict[str, str]:
    return {"X-API-Key": SCORING_KEY}


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]
