"""`riskscore serve` on the redis feature-state backend: a real process and a real
redis-server (or a real Redis Cluster). The windows outlive the process: nothing is
replayed at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from features.state import FeatureStateUnavailable
from service.app import build_scorer
from service.settings import Settings
from tests.redis_cluster import RedisTarget
from tests.redis_server import free_port
from tests.service.test_serve_process import _request, _serving, _stop


def _payment(transaction_id: str, amount: float) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "timestamp": "2025-06-02T14:03:27Z",
        "customer_id": "c-redis",
        "terminal_id": "t-redis",
        "amount": amount,
    }


def _feature(detail: dict[str, object], name: str) -> float:
    explanation = detail["explanation"]
    assert isinstance(explanation, dict)
    (value,) = [a["value"] for a in explanation["attributions"] if a["feature"] == name]
    return float(value)


def test_features_continue_from_redis_across_processes(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    """On one server and on a 3-primary cluster (``redis+cluster://``)."""
    redis_target.flush(2)
    env = {
        "RISKSCORE_FEATURE_STATE_URL": redis_target.url(2),
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_SEQUENCE": "off",
    }
    first_store, second_store = tmp_path / "one", tmp_path / "two"
    with _serving(first_store, extra_env=env) as (base, process):
        status, first = _request(f"{base}/score", _payment("redis-1", 100.0))
        assert status == 200, first
        _stop(process)
    # Another process with an empty audit store: there is nothing it could replay, yet it
    # sees the first payment in the customer's windows.
    with _serving(second_store, extra_env=env) as (base, process):
        status, second = _request(f"{base}/score", _payment("redis-2", 300.0))
        assert status == 200, second
        _, detail = _request(f"{base}/decisions/redis-2")
        assert _feature(detail, "CUSTOMER_ID_NB_TX_1DAY_WINDOW") == 2.0
        assert _feature(detail, "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW") == 200.0
        _stop(process)
    # A retry of the first payment, back where it was recorded: the shared state refuses it
    # as a duplicate and the decision comes from the audit store, unchanged.
    with _serving(first_store, extra_env=env) as (base, process):
        status, again = _request(f"{base}/score", _payment("redis-1", 100.0))
        assert (status, again) == (200, first)
        _stop(process)


def _serve_exits(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`riskscore serve` run to its end (start-up is expected to fail)."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
        env={**os.environ, "RISKSCORE_KAFKA": "off", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_feature_state_stops_start_up_with_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = _serve_exits({"RISKSCORE_DATA_DIR": str(tmp_path), "RISKSCORE_FEATURE_STATE_URL": url})
    assert done.returncode != 0
    assert "cannot reach the feature state: RISKSCORE_FEATURE_STATE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_feature_state_url_that_is_not_redis_is_refused(tmp_path: Path) -> None:
    done = _serve_exits({"RISKSCORE_FEATURE_STATE_URL": "http://127.0.0.1:6379/0"})
    assert done.returncode != 0
    assert "RISKSCORE_FEATURE_STATE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failed_start_leaves_no_audit_writer_behind(tmp_path: Path) -> None:
    # Embedding the service (build_scorer in a longer-lived process): a start that fails on
    # the feature state must close the audit store it had already opened.
    before = {t.ident for t in threading.enumerate()}
    settings = Settings.of(
        data_dir=tmp_path,
        kafka="off",
        sequence="off",
        feature_state_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    with pytest.raises(FeatureStateUnavailable):
        build_scorer(settings)
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert left == []
