"""The one lifecycle of serve and consume: what a start began is stopped when it fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from explain.audit.store import AuditStoreError
from service.app import build_scorer
from service.lifecycle import ScoringProcess
from service.prometheus_metrics import ScoringMetrics
from service.settings import Settings
from streaming.broker import free_port


async def test_a_start_that_fails_after_the_broker_started_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the topics could not be created")

    monkeypatch.setattr("service.stream_runner.ensure_topics", refuse)
    port = free_port()
    settings = Settings.of(data_dir=tmp_path, kafka="on", kafka_embedded_port=port)
    metrics = ScoringMetrics()
    process = ScoringProcess(settings, build_scorer(settings, metrics), metrics)

    with pytest.raises(RuntimeError, match="topics could not be created"):
        await process.start()

    with socket.socket() as s:  # the broker it started is gone: its port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    with pytest.raises(AuditStoreError, match="closed"):  # and the store is flushed, closed
        process.scorer.store.get("any")
