"""The shadow challenger against a real `riskscore serve` and its real SQLite audit file:
chosen over HTTP and with the CLI, refused to non-admins and for the champion, its rows
stored for every answered payment (the challenger's own prediction on the vector as
decided, exact SHAP summing to its raw score, its own thresholds), never in the answer,
kept across a restart, switched off, emptied by promoting it, and dropping (counted) when
its queue is full."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from explain.audit.challenger_log import ChallengerScore
from explain.audit.sqlite_store import SQLiteAuditStore
from models.artifacts import MANIFEST_FILE
from models.fast import FastModel
from models.metrics import sigmoid
from models.versions import CHALLENGER_FILE, POINTER_FILE
from tests.service.test_model_promotion import (
    ADMIN_KEY,
    COMPLIANCE_KEY,
    SCORING_KEY,
    SHIPPED,
    Served,
    _call,
    _edit,
    _metric,
    _score,
    _serve,
    _version,
)
from tests.service.test_score_api import DECISION_FIELDS  # the answer, as before

V2 = f"{SHIPPED}-shifted"
# Its own cut points, far from the champion's: an action by the champion's would show.
V2_THRESHOLDS = {"review": 0.001, "decline": 0.002}
ROWS_TIMEOUT_S = 60.0


def _shift_leaves(version_dir: Path, by: float) -> None:
    """Another model: every leaf of the first tree moved by ``by`` (so every raw score
    moves by it), its SHA-256 in the manifest updated to the new bytes."""
    model = version_dir / "model.txt"
    text = model.read_text()
    head, sep, rest = text.partition("leaf_value=")
    line, newline, tail = rest.partition("\n")
    shifted = " ".join(repr(float(v) + by) for v in line.split())
    # The header gives each tree's size in bytes: the first one's grows with its text.
    sizes = re.search(r"^tree_sizes=(\d+)", head, re.M)
    assert sizes is not None
    grown = str(int(sizes.group(1)) + len(shifted) - len(line))
    head = head[: sizes.start(1)] + grown + head[sizes.end(1) :]
    model.write_text(head + sep + shifted + newline + tail)
    manifest = json.loads((version_dir / MANIFEST_FILE).read_text())
    files = {**manifest["files"], "model.txt": hashlib.sha256(model.read_bytes()).hexdigest()}
    _edit(version_dir / MANIFEST_FILE, files=files)


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    _version(root, "1", SHIPPED, SHIPPED)
    _version(root, "22", V2, None, V2_THRESHOLDS)
    _shift_leaves(root / "22", 0.75)
    (root / POINTER_FILE).write_text(SHIPPED + "\n")
    return root


def _rows(served_data: Path, ids: list[str]) -> list[ChallengerScore]:
    """The challenger rows of ``ids`` once every one of them is stored (polled)."""
    deadline = time.monotonic() + ROWS_TIMEOUT_S
    with SQLiteAuditStore(served_data / "audit.sqlite3") as store:
        while True:
            rows = store.challenger_scores_of(ids)
            if {r.transaction_id for r in rows} >= set(ids):
                return rows
            if time.monotonic() > deadline:
                pytest.fail(f"challenger rows of {len(ids) - len(rows)} payments missing")
            time.sleep(0.05)


def _check_rows(rows: list[ChallengerScore], data_dir: Path, challenger_dir: Path) -> None:
    """Each row is the challenger's own verdict on the vector its decision recorded."""
    model = FastModel.load(challenger_dir)
    with SQLiteAuditStore(data_dir / "audit.sqlite3") as store:
        records = store.get_many([r.transaction_id for r in rows])
    for row in rows:
        record = records[row.transaction_id]
        assert row.model_version == V2 and row.event_time_ms == record.transaction.epoch_ms
        x = np.array([[a["value"] for a in record.explanation.attributions]])
        raw = float(model.predict_raw(x)[0])
        assert row.score == pytest.approx(float(sigmoid(np.array([raw]))[0]), abs=1e-12)
        assert row.score != pytest.approx(record.score, abs=1e-6)  # another model indeed
        assert row.action == model.thresholds.action(row.score)
        explanation = row.explanation()
        contributions = [a["contribution"] for a in explanation.attributions]
        assert explanation.raw_score == pytest.approx(raw, abs=1e-9)
        assert explanation.base_value + sum(contributions) == pytest.approx(raw, abs=1e-9)
        assert [a["value"] for a in explanation.attributions] == x[0].tolist()
        assert row.sequence_score is None
        assert row.reasons()  # worded as a decision's reasons


def _models_cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service.cli", "models", "challenge", *args]
    return subprocess.run(command, env=served.env, capture_output=True, text=True, timeout=120)


def test_a_challenger_scores_every_answer_in_the_shadow(model_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "a"
    with _serve(model_root, data) as served:
        base = served.base
        assert _call(f"{base}/models", key=ADMIN_KEY)[1]["challenger"] is None
        # Who may: admin only; the champion cannot shadow itself; an unknown version.
        for key in (SCORING_KEY, COMPLIANCE_KEY):
            assert _call(f"{base}/models/{V2}/challenge", "POST", key)[0] == 403
            assert _call(f"{base}/models/challenger", "DELETE", key)[0] == 403
        assert _call(f"{base}/models/{V2}/challenge", "POST")[0] == 401
        status, body = _call(f"{base}/models/{SHIPPED}/challenge", "POST", ADMIN_KEY)
        assert (status, body["error"]["type"]) == (409, "champion_not_challenger")
        status, body = _call(f"{base}/models/nope/challenge", "POST", ADMIN_KEY)
        assert (status, body["error"]["type"]) == (404, "not_found")
        assert not (model_root / CHALLENGER_FILE).exists()

        status, listed = _call(f"{base}/models/{V2}/challenge", "POST", ADMIN_KEY)
        assert status == 200, listed
        assert listed["champion"]["version"] == SHIPPED
        challenger = listed["challenger"]
        assert challenger["version"] == V2 and challenger["directory"] == "22"
        assert challenger["thresholds"] == V2_THRESHOLDS
        assert set(challenger["sha256"]) == {"model.txt"}
        assert challenger["shadow"]["queue_capacity"] == 10_000
        assert (model_root / CHALLENGER_FILE).read_text().strip() == V2

        answers = [_score(base) for _ in range(20)]
        assert all(status == 200 for status, _ in answers)
        for _, body in answers:
            assert set(body) == DECISION_FIELDS  # nothing of the challenger in the answer
            assert body["model_version"] == SHIPPED
        ids = [body["transaction_id"] for _, body in answers]
        rows = _rows(data, ids)
        _check_rows(rows, data, model_root / "22")
        assert _metric(base, "riskscore_challenger_scored_total") >= 20
        shadow = _call(f"{base}/models", key=COMPLIANCE_KEY)[1]["challenger"]["shadow"]
        assert shadow["scored"] >= 20 and shadow["dropped"] == 0

    # A restart keeps the challenger (the file), and the CLI switches it off and on.
    with _serve(model_root, data) as served:
        base = served.base
        assert _call(f"{base}/models", key=ADMIN_KEY)[1]["challenger"]["version"] == V2
        done = _models_cli(served, "--off")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "challenger: none"
        assert _call(f"{base}/models", key=ADMIN_KEY)[1]["challenger"] is None
        assert not (model_root / CHALLENGER_FILE).exists()
        _, unshadowed = _score(base)
        done = _models_cli(served, V2)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"challenger: {V2}"
        _, shadowed = _score(base)
        _rows(data, [shadowed["transaction_id"]])
        # The payment answered while the shadow was off was never queued: none for it.
        with SQLiteAuditStore(data / "audit.sqlite3") as store:
            assert store.challenger_scores_of([unshadowed["transaction_id"]]) == []
        bad = _models_cli(served)
        assert bad.returncode != 0 and "VERSION, or --off" in bad.stderr

        # Promoting the challenger leaves the slot empty, in this process and in the file.
        status, listed = _call(f"{base}/models/{V2}/promote", "POST", ADMIN_KEY)
        assert status == 200, listed
        assert listed["champion"]["version"] == V2 and listed["challenger"] is None
        assert not (model_root / CHALLENGER_FILE).exists()


def test_a_full_queue_drops_and_counts(model_root: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RISKSCORE_CHALLENGER_QUEUE_SIZE", "1")
    (model_root / CHALLENGER_FILE).write_text(V2 + "\n")  # set before the start
    with _serve(model_root, tmp_path / "a") as served:
        base = served.base
        burst = [
            {
                "transaction_id": f"burst-{i}",
                "timestamp": f"2025-06-03T10:00:{i:02d}+00:00",
                "customer_id": f"c-{i % 7}",
                "terminal_id": "t-1",
                "amount": 10.0 + i,
            }
            for i in range(50)
        ]
        status, body = _call(f"{base}/score/batch", "POST", SCORING_KEY, {"transactions": burst})
        assert status == 200, body
        # One group of 50 decisions made durable at once, one place in the queue.
        dropped = _metric(base, 'riskscore_challenger_dropped_total{reason="queue_full"}')
        assert dropped == 49
        listed = _call(f"{base}/models", key=ADMIN_KEY)[1]
        assert listed["challenger"]["shadow"]["dropped"] == 49
        assert listed["challenger"]["shadow"]["queue_capacity"] == 1
        metrics = _call(f"{base}/metrics")[1]
        assert re.search(r"^riskscore_challenger_queue_depth \d", metrics, re.M)
