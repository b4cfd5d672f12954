"""Drift and decline-precision gauges on /metrics, recomputed from the real audit store:
what they say is what the stored decisions and received labels say."""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from explain.audit.sqlite_store import SQLiteAuditStore
from explain.reports.query import DecisionFilter
from explain.reports.summary import summarize
from models.artifact_paths import default_artifact_dir
from models.artifacts import load_manifest
from service.app import WARM_START, create_app
from service.model_signals import ModelSignals
from service.settings import AUDIT_FILE, Settings
from tests.reports.conftest import Filled, stored_records

WINDOW_DAYS = 3


def _in_window(data_dir: Path) -> list[Any]:
    records = stored_records(data_dir / AUDIT_FILE)
    end = max(r.transaction.epoch_ms for r in records) + 1
    start = end - int(timedelta(days=WINDOW_DAYS).total_seconds() * 1000)
    return [r for r in records if start <= r.transaction.epoch_ms < end]


def test_the_gauges_say_what_the_store_holds(data_dir: Path, filled: Filled) -> None:
    store = SQLiteAuditStore(data_dir / AUDIT_FILE)
    registry = CollectorRegistry()
    signals = ModelSignals(store, default_artifact_dir(), registry, WINDOW_DAYS)
    try:
        summary = signals.refresh()
    finally:
        store.close()
    assert summary is not None
    window = _in_window(data_dir)
    assert registry.get_sample_value("riskscore_signal_window_decisions") == len(window)
    # Precision of declines, counted here from the records and the labels sent.
    declined = [r.transaction_id for r in window if r.action == "decline"]
    labelled = [tid for tid in declined if tid in filled.labels]
    assert labelled, "the filled store must hold labelled declines in the window"
    precision = sum(filled.labels[tid] for tid in labelled) / len(labelled)
    assert registry.get_sample_value("riskscore_signal_labelled_declines") == len(labelled)
    assert registry.get_sample_value("riskscore_decline_precision") == precision
    frauds = [r for r in window if filled.labels.get(r.transaction_id) is True]
    recall = sum(r.action == "decline" for r in frauds) / len(frauds)
    assert registry.get_sample_value("riskscore_decline_recall") == recall
    # Drift: the period report's PSI of each feature over the same days.
    reference = load_manifest(default_artifact_dir()).feature_distributions
    assert reference
    store = SQLiteAuditStore(data_dir / AUDIT_FILE)
    try:
        end = max(r.transaction.epoch_ms for r in window) + 1
        selection = DecisionFilter.model_validate(
            {"from": _iso(end - WINDOW_DAYS * 86_400_000), "to": _iso(end)}
        )
        report = summarize(store, selection, reference)
    finally:
        store.close()
    rows = report.drift()
    assert len(rows) == len(reference)
    for row in rows:
        value = registry.get_sample_value("riskscore_feature_psi", {"feature": row.feature})
        assert value is not None
        assert (math.isnan(value) and row.psi is None) or value == row.psi
    drifted = registry.get_sample_value("riskscore_features_drifted")
    assert drifted == sum(r.drifted for r in rows)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat()


def test_an_empty_store_leaves_the_precision_unknown(tmp_path: Path) -> None:
    store = SQLiteAuditStore(tmp_path / AUDIT_FILE)
    registry = CollectorRegistry()
    try:
        assert ModelSignals(store, default_artifact_dir(), registry, 7).refresh() is None
    finally:
        store.close()
    precision = registry.get_sample_value("riskscore_decline_precision")
    assert precision is not None and math.isnan(precision)
    assert registry.get_sample_value("riskscore_signals_updated_timestamp_seconds") == 0


def _gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


async def test_serve_exports_the_signals_on_metrics(aiohttp_client: Any, data_dir: Path) -> None:
    settings = Settings.of(
        data_dir=data_dir, kafka="off", signals_interval_s=3600.0, signals_window_days=WINDOW_DAYS
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    await app[WARM_START]
    # The first refresh starts with the service: poll until it is published (bounded).
    deadline = time.monotonic() + 60
    while True:
        text = await (await client.get("/metrics")).text()
        if (_gauge(text, "riskscore_signals_updated_timestamp_seconds") or 0) > 0:
            break
        assert time.monotonic() < deadline, "the signals were never computed"
        await asyncio.sleep(0.05)
    assert _gauge(text, "riskscore_signal_window_decisions") == len(_in_window(data_dir))
    assert 'riskscore_feature_psi{feature="TX_AMOUNT"}' in text
