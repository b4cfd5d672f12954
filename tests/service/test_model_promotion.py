"""Model versions against a real `riskscore serve`: GET /models, promotion under concurrent
requests (no error, no mixed decision, one switch), rollback, a version without its
sequence artifact (stage off, logged, counted), refusals, persistence across a restart,
and a second process following the promotion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.artifacts import MANIFEST_FILE, load_manifest
from models.errors import ArtifactError
from models.versions import POINTER_FILE, SEQUENCE_DIR, ModelDirectory

SCORING_KEY = "s" * 24
COMPLIANCE_KEY = "c" * 24
ADMIN_KEY = "a" * 24
SHIPPED = load_manifest(default_artifact_dir()).model_version
V2, UNPAIRED, BROKEN = f"{SHIPPED}-v2", f"{SHIPPED}-unpaired", f"{SHIPPED}-broken"
V2_THRESHOLDS = {"review": 0.0, "decline": 0.0}
SHIPPED_THRESHOLDS = load_manifest(default_artifact_dir()).thresholds
STARTUP_TIMEOUT_S = 120.0
POLL_S = 0.2


def _edit(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _version(
    root: Path,
    name: str,
    model_version: str,
    sequence_for: str | None,
    thresholds: dict[str, Any] | None = None,
) -> None:
    """A copy of the shipped fast model as version ``name`` (manifests are not checksummed
    themselves: editing them keeps every file verified), with the shipped sequence
    artifact re-labelled as fitted for ``sequence_for`` (None: no sequence artifact)."""
    target = root / name
    shutil.copytree(default_artifact_dir(), target)
    manifest = target / MANIFEST_FILE
    changes: dict[str, Any] = {"model_version": model_version}
    if thresholds is not None:
        changes["thresholds"] = {**json.loads(manifest.read_text())["thresholds"], **thresholds}
    _edit(manifest, created_at=f"2024-05-0{len(name)}T00:00:00Z", **changes)
    if sequence_for is not None:
        shutil.copytree(default_sequence_artifact_dir(), target / SEQUENCE_DIR)
        _edit(target / SEQUENCE_DIR / MANIFEST_FILE, fast_model_version=sequence_for)


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    _version(root, "1", SHIPPED, SHIPPED)
    # Its thresholds differ (it declines every payment): an answer whose action does not
    # follow its own version's thresholds was decided by a mix of the two.
    _version(root, "22", V2, V2, V2_THRESHOLDS)
    # Its sequence artifact was fitted for the shipped model, not for this one.
    _version(root, "333", UNPAIRED, SHIPPED)
    _version(root, "4444", BROKEN, None)
    with (root / "4444" / "model.txt").open("a") as f:
        f.write("\n")  # no longer the bytes its SHA-256 names
    (root / POINTER_FILE).write_text(SHIPPED + "\n")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(
    url: str, method: str = "GET", key: str | None = None, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@dataclass
class Served:
    base: str
    process: subprocess.Popen[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def _serve(model_root: Path, data_dir: Path) -> Iterator[Served]:
    port = _free_port()
    log = data_dir.with_suffix(".log")
    env = {
        **os.environ,
        "RISKSCORE_DATA_DIR": str(data_dir),
        "RISKSCORE_PORT": str(port),
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_MODEL_DIR": str(model_root),
        "RISKSCORE_MODEL_POLL_S": str(POLL_S),
        "RISKSCORE_API_KEYS": SCORING_KEY,
        "RISKSCORE_COMPLIANCE_API_KEYS": COMPLIANCE_KEY,
        "RISKSCORE_ADMIN_API_KEYS": ADMIN_KEY,
        "RISKSCORE_SIGNALS_INTERVAL_S": "0",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log, env)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:  # readiness is the condition waited on
            if process.poll() is not None:
                pytest.fail(f"serve exited early:\n{log.read_text()}")
            try:
                if _call(f"{served.base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


_ids = iter(range(10**9))


def _score(base: str) -> tuple[int, dict[str, Any]]:
    n = next(_ids)
    tx = {
        "transaction_id": f"p-{n}",
        "timestamp": f"2025-06-02T14:{n // 60 % 60:02d}:{n % 60:02d}+00:00",
        "customer_id": f"c-{n % 17}",
        "terminal_id": f"t-{n % 5}",
        "amount": 20.0 + n % 300,
    }
    return _call(f"{base}/score", "POST", SCORING_KEY, tx)


def _metric(base: str, name: str) -> float:
    _, text = _call(f"{base}/metrics")
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name)]
    assert values, f"{name} not on /metrics"
    return float(values[0])


def _promote_cli(served: Served, version: str) -> subprocess.CompletedProcess[str]:
    """`riskscore models promote` configured as the service is (its admin key from there)."""
    command = [sys.executable, "-m", "service.cli", "models", "promote", version]
    return subprocess.run(command, env=served.env, capture_output=True, text=True, timeout=120)


def _under_load(base: str, promote: Any, workers: int = 4, after: int = 5) -> list[list[Any]]:
    """Each worker scores one payment after another until it has scored ``after`` payments
    since ``promote()`` returned; its answers' (status, model_version) in order."""
    started, promoted = threading.Barrier(workers + 1), threading.Event()
    decisions: list[dict[str, Any]] = []
    answers: list[list[Any]] = [[] for _ in range(workers)]

    def work(mine: list[Any]) -> None:
        started.wait()
        since = 0
        while since < after:
            done = promoted.is_set()
            status, body = _score(base)
            mine.append((status, body.get("model_version"), done))
            decisions.append(body)
            since += done

    threads = [threading.Thread(target=work, args=(a,)) for a in answers]
    for thread in threads:
        thread.start()
    started.wait()
    try:
        promote()
    finally:
        promoted.set()
        for thread in threads:
            thread.join(timeout=120)
    for body in decisions:
        _check_thresholds(body)
    return answers


def _check_thresholds(body: dict[str, Any]) -> None:
    """The answer's action is the one its own version's thresholds give its score."""
    if body["model_version"] == V2:
        assert body["action"] == "decline", body  # its thresholds decline everything
    else:
        assert body["model_version"] == SHIPPED, body
        assert body["action"] == SHIPPED_THRESHOLDS.action(body["score"]), body


def test_versions_promotion_rollback_and_restart(model_root: Path, tmp_path: Path) -> None:
    with _serve(model_root, tmp_path / "a") as served:
        base = served.base
        status, listed = _call(f"{base}/models", key=COMPLIANCE_KEY)
        assert status == 200
        assert listed["champion"]["version"] == SHIPPED
        assert listed["challenger"] is None
        champion = listed["champion"]
        assert set(champion["sha256"]) == {"model.txt"}
        assert champion["training_window"] == {"start": "2024-02-07", "end": "2024-04-29"}
        assert champion["validation_metrics"]["validation_average_precision"] > 0.9
        assert [v["version"] for v in listed["versions"]] == [SHIPPED, V2, UNPAIRED, BROKEN]
        assert [v["champion"] for v in listed["versions"]] == [True, False, False, False]
        assert _call(f"{base}/models", key=ADMIN_KEY)[0] == 200

        # Who may: admin only promotes; scoring keys do not even read; no key is 401.
        assert _call(f"{base}/models", key=SCORING_KEY)[0] == 403
        assert _call(f"{base}/models")[0] == 401
        for key in (SCORING_KEY, COMPLIANCE_KEY):
            assert _call(f"{base}/models/{V2}/promote", "POST", key)[0] == 403
        assert _call(f"{base}/models/{V2}/promote", "POST")[0] == 401
        # No such version; a version that fails its checks: the champion stays.
        status, body = _call(f"{base}/models/nope/promote", "POST", ADMIN_KEY)
        assert (status, body["error"]["type"]) == (404, "not_found")
        status, body = _call(f"{base}/models/{BROKEN}/promote", "POST", ADMIN_KEY)
        assert (status, body["error"]["type"]) == (422, "invalid_artifact")
        assert "SHA-256" in body["error"]["message"]
        assert _score(base)[1]["model_version"] == SHIPPED

        # Promotion under concurrent requests, through the command line.
        cli: list[subprocess.CompletedProcess[str]] = []
        answers = _under_load(base, lambda: cli.append(_promote_cli(served, "22")))
        assert cli[0].returncode == 0, cli[0].stderr
        assert cli[0].stdout.strip() == f"champion: {V2}"
        for mine in answers:
            assert {status for status, _, _ in mine} == {200}
            versions = [version for _, version, _ in mine]
            assert set(versions) <= {SHIPPED, V2}
            # One switch at most, old to new, and the new one once promotion has returned.
            switch = versions.index(V2)
            assert versions[switch:] == [V2] * (len(versions) - switch)
            assert all(version == V2 for _, version, done in mine if done)
        # The decision on record names the version that made it.
        status, answer = _score(base)
        _, stored = _call(f"{base}/decisions/{answer['transaction_id']}", key=SCORING_KEY)
        assert stored["model_version"] == answer["model_version"] == V2
        assert (model_root / POINTER_FILE).read_text().strip() == V2
        assert _metric(base, "riskscore_second_stage_unpaired") == 0

        # A fast model whose sequence artifact was fitted for another: the stage is off.
        status, listed = _call(f"{base}/models/333/promote", "POST", ADMIN_KEY)
        assert status == 200 and listed["champion"]["version"] == UNPAIRED
        assert listed["champion"]["sequence"]["matches"] is False
        assert _metric(base, "riskscore_second_stage_unpaired") == 1
        assert _score(base)[1]["model_version"] == UNPAIRED
        assert "second stage off for fast model " + UNPAIRED in served.log.read_text()

        # Rollback: promote the previous one.
        status, listed = _call(f"{base}/models/{V2}/promote", "POST", ADMIN_KEY)
        assert status == 200 and listed["champion"]["version"] == V2
        assert _metric(base, "riskscore_second_stage_unpaired") == 0
        assert _metric(base, 'riskscore_model_promotions_total{outcome="promoted"}') == 3
        assert _score(base)[1]["model_version"] == V2

    # Persisted: a restart serves the promoted version, not the first one.
    with _serve(model_root, tmp_path / "a") as served:
        assert _call(f"{served.base}/models", key=ADMIN_KEY)[1]["champion"]["version"] == V2
        assert _score(served.base)[1]["model_version"] == V2


def test_another_process_follows_a_promotion(model_root: Path, tmp_path: Path) -> None:
    with _serve(model_root, tmp_path / "a") as a, _serve(model_root, tmp_path / "b") as b:
        assert _score(b.base)[1]["model_version"] == SHIPPED
        assert _call(f"{a.base}/models/{V2}/promote", "POST", ADMIN_KEY)[0] == 200
        promoted = time.monotonic()
        # B reads the pointer every POLL_S: it serves V2 well within a few of them.
        while _score(b.base)[1]["model_version"] != V2:
            assert time.monotonic() - promoted < 10 * POLL_S + 5, "B never followed"
            time.sleep(POLL_S / 2)
        assert _call(f"{b.base}/models", key=ADMIN_KEY)[1]["champion"]["version"] == V2

        # A champion file naming a version that fails its checks (edited by hand): B keeps
        # serving V2, and tries that writing of the file once, not at every poll.
        (model_root / POINTER_FILE).write_text(BROKEN + "\n")
        refused = 'riskscore_model_promotions_total{outcome="refused"}'
        tried = time.monotonic()
        while _metric(b.base, refused) < 1:
            assert time.monotonic() - tried < 10 * POLL_S + 5, "B never read the pointer"
            time.sleep(POLL_S / 2)
        assert _metric(b.base, "riskscore_model_pointer_mismatch") == 1
        # Ten more readings of the file (well within the retry interval): not loaded again.
        polls = "riskscore_model_pointer_polls_total"
        until = _metric(b.base, polls) + 10
        while _metric(b.base, polls) < until:
            assert time.monotonic() - tried < 20 * POLL_S + 10, "B stopped reading the pointer"
            time.sleep(POLL_S / 2)
        assert _metric(b.base, refused) == 1
        assert _score(b.base)[1]["model_version"] == V2
        assert "cannot follow the model pointer" in b.log.read_text()


def test_a_directory_without_pointer_serves_its_newest_version_and_pins_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    _version(root, "1", SHIPPED, SHIPPED)
    _version(root, "22", V2, V2)
    directory = ModelDirectory(root)
    assert directory.champion().version == V2
    assert (root / POINTER_FILE).read_text().strip() == V2
    _version(root, "333", UNPAIRED, None)  # newer, but not promoted
    assert directory.champion().version == V2
    assert directory.find("333") is not None and directory.find("333").version == UNPAIRED


def test_a_single_artifact_is_one_version_with_nothing_to_persist() -> None:
    directory = ModelDirectory(default_artifact_dir(), default_sequence_artifact_dir())
    assert not directory.versioned
    assert [v.version for v in directory.versions()] == [SHIPPED]
    assert directory.read_pointer() is None
    with pytest.raises(ArtifactError, match="nothing to promote"):
        directory.write_pointer(SHIPPED)


def test_the_champion_file_rename_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    _version(root, "1", SHIPPED, None)
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    ModelDirectory(root).write_pointer(SHIPPED)
    # The file's contents, then the directory holding its new name, in that order.
    assert synced == [False, True]
