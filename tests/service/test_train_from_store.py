"""`riskscore train --from-store` on a real SQLite audit store filled by the real scorer
through the real API, labels sent with their labelled-at times: the training matrix is the
recorded vectors bit for bit, the label delay and the declined-without-label rule are
honoured and counted, the artifact loads as a model version and GET /models lists it, and
bad windows are one clear line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from explain.audit import compact
from explain.audit.sqlite_store import SQLiteAuditStore
from features.definitions import DEFAULT_FEATURES, feature_names
from features.simulator import SimulationConfig
from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.artifacts import load_manifest, verify_artifact
from models.train.fast_trainer import TrainingDataError
from models.versions import POINTER_FILE, SEQUENCE_DIR
from service.app import WARM_START, create_app
from service.cli import main
from service.settings import AUDIT_FILE, Settings
from service.training_set import read_window
from tests.reports.history import batches, payloads, score_all

HISTORY = SimulationConfig(customers=50, terminals=100, days=12, seed=2, start=date(2024, 4, 1))
FIRST_DAY = datetime(2024, 4, 1, tzinfo=UTC)  # the simulator's first day
AS_OF = FIRST_DAY + timedelta(days=HISTORY.days)  # the end of the last simulated day
DELAY_DAYS = 3
LABEL_LAG = timedelta(days=1)  # a label becomes known a day after its payment
ADMIN_KEY = "a" * 24
SCORING_KEY = "s" * 24


@dataclass(frozen=True)
class Payment:
    transaction_id: str
    event: datetime
    declined: bool
    fraud: bool


@dataclass(frozen=True)
class Filled:
    audit_file: Path
    payments: list[Payment]
    # transaction id -> the label sent (is_fraud) and when it became known
    labels: dict[str, tuple[bool, datetime]]


async def _fill(data_dir: Path) -> Filled:
    app = create_app(Settings.of(data_dir=data_dir, kafka="off"))
    transactions, truth = payloads(HISTORY)
    async with TestClient(TestServer(app)) as client:
        await app[WARM_START]
        actions = await score_all(client, transactions)
        payments = [
            Payment(
                tx["transaction_id"],
                datetime.fromisoformat(tx["timestamp"]),
                actions[tx["transaction_id"]] == "decline",
                truth[tx["transaction_id"]],
            )
            for tx in transactions
        ]
        labels: dict[str, tuple[bool, datetime]] = {}
        for i, p in enumerate(payments):
            # Chargebacks for the frauds, a cleared label for a third of the rest; every
            # other declined payment gets none, as a declined payment rarely would.
            if (p.fraud or i % 3 == 0) and not (p.declined and i % 2 == 0):
                labels[p.transaction_id] = (p.fraud, p.event + LABEL_LAG)
        body = [
            {"transaction_id": tid, "is_fraud": fraud, "labelled_at": at.isoformat()}
            for tid, (fraud, at) in labels.items()
        ]
        for batch in batches(body):
            assert (await client.post("/labels", json={"labels": batch})).status == 200
    return Filled(data_dir / AUDIT_FILE, payments, labels)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return asyncio.run(_fill(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def trained(filled: Filled, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact") / "candidate"
    code = main(_train_args(filled, out))
    assert code == 0
    return out


def _train_args(filled: Filled, out: Path, **changes: str) -> list[str]:
    options = {
        "--train-from": "2024-04-01",
        "--train-to": "2024-04-12",
        "--as-of": AS_OF.isoformat(),
        "--label-delay-days": str(DELAY_DAYS),
        "--validation-days": "4",
        "--audit-file": str(filled.audit_file),
        "--out": str(out),
        **changes,
    }
    return ["train", "--from-store", *(part for item in options.items() for part in item)]


def _known(filled: Filled, p: Payment) -> bool | None:
    label = filled.labels.get(p.transaction_id)
    return None if label is None or label[1] > AS_OF else label[0]


def _recorded_vectors(audit_file: Path) -> dict[str, np.ndarray]:
    """Each decision's feature values straight from the file's compact records, in the
    current feature order (not through the store's reads)."""
    names = feature_names(DEFAULT_FEATURES)
    with sqlite3.connect(audit_file) as conn:
        schemas = {
            sid: json.loads(text)["feature_names"]
            for sid, text in conn.execute("SELECT id, schema_json FROM explanation_schemas")
        }
        vectors = {}
        for tid, blob in conn.execute("SELECT transaction_id, record FROM decisions"):
            record = compact.decode(bytes(blob))
            stored = list(schemas[record.schema_id])
            values = compact.feature_values(record)
            vectors[tid] = values[[stored.index(n) for n in names]]
    return vectors


def test_the_training_matrix_is_the_recorded_vectors_bit_for_bit(filled: Filled) -> None:
    store = SQLiteAuditStore(filled.audit_file)
    try:
        window = read_window(
            store, 0, 2**62, int(AS_OF.timestamp() * 1000), feature_names(DEFAULT_FEATURES), False
        )
    finally:
        store.close()
    recorded = _recorded_vectors(filled.audit_file)
    order = [p.transaction_id for p in filled.payments]
    assert len(window) == len(order)
    expected = np.vstack([recorded[tid] for tid in order])
    assert window.x.dtype == np.float64
    assert window.x.tobytes() == expected.tobytes()
    # Labels as received and known by the cut-off; unknown ones are -1, never 0.
    known = [_known(filled, p) for p in filled.payments]
    assert window.labels.tolist() == [-1 if k is None else int(k) for k in known]


def test_the_artifact_counts_what_it_left_out_and_trained_on_exactly_the_kept_rows(
    filled: Filled, trained: Path
) -> None:
    manifest = verify_artifact(trained)
    cut = AS_OF - timedelta(days=DELAY_DAYS)
    unlabelled = [p for p in filled.payments if _known(filled, p) is None]
    declined = [p for p in unlabelled if p.declined]
    recent = [p for p in unlabelled if not p.declined and p.event > cut]
    rows = manifest.rows
    assert rows["window_payments"] == len(filled.payments)
    assert rows["unlabelled"] == len(unlabelled)
    assert rows["declined_unlabelled_excluded"] == len(declined) > 0
    # The last day's labels came after the cut-off: the delay leaves those payments out.
    assert rows["unlabelled_within_delay_excluded"] == len(recent) > 0
    assert rows["unlabelled_taken_legitimate"] == len(unlabelled) - len(declined) - len(recent)
    excluded = {p.transaction_id for p in declined + recent}
    kept = [p for p in filled.payments if p.transaction_id not in excluded]
    assert rows["train"] + rows["validation"] == len(kept)
    # The checksum of what the model saw is that of the recorded vectors of the kept rows
    # and their targets (an unlabelled payment past the delay counts as legitimate).
    recorded = _recorded_vectors(filled.audit_file)
    digest = hashlib.sha256()
    digest.update(np.vstack([recorded[p.transaction_id] for p in kept]).tobytes())
    digest.update(np.array([bool(_known(filled, p)) for p in kept], dtype=np.int8).tobytes())
    assert manifest.data_sha256 == digest.hexdigest()
    assert manifest.data_name == "audit-store"
    for prefix in ("validation", "champion_validation"):
        for metric in ("average_precision", "roc_auc", "cp_at_100"):
            assert manifest.metrics[f"{prefix}_{metric}"] is not None
    assert str(manifest.validation_window.start) == "2024-04-09"  # type: ignore[union-attr]
    assert manifest.config["labels_known_by"] == AS_OF.isoformat()


async def test_the_artifact_is_a_version_get_models_lists(
    trained: Path, tmp_path: Path, aiohttp_client: Any
) -> None:
    root = tmp_path / "models"
    shutil.copytree(default_artifact_dir(), root / "1")
    shutil.copytree(default_sequence_artifact_dir(), root / "1" / SEQUENCE_DIR)
    shutil.copytree(trained, root / "2")
    champion = load_manifest(default_artifact_dir()).model_version
    (root / POINTER_FILE).write_text(champion + "\n")
    settings = Settings.of(
        data_dir=tmp_path / "var",
        kafka="off",
        model_dir=root,
        api_keys=(SCORING_KEY,),
        admin_api_keys=(ADMIN_KEY,),
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    await app[WARM_START]  # scoring is refused (503) until the state is rebuilt
    response = await client.get("/models", headers={"X-API-Key": ADMIN_KEY})
    assert response.status == 200, await response.text()
    body = await response.json()
    new = load_manifest(trained).model_version
    assert new != champion
    assert new in [v["version"] for v in body["versions"]]
    assert body["champion"]["version"] == champion
    # It loads (every file against its SHA-256) and decides: promoted, it scores a payment.
    promoted = await client.post(f"/models/{new}/promote", headers={"X-API-Key": ADMIN_KEY})
    assert promoted.status == 200, await promoted.text()
    payment = {
        "transaction_id": "after-promotion",
        "timestamp": "2024-05-02T10:00:00Z",
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "amount": 25.0,
    }
    scored = await client.post("/score", json=payment, headers={"X-API-Key": SCORING_KEY})
    assert scored.status == 200, await scored.text()
    assert (await scored.json())["model_version"] == new


def test_a_later_validation_slice_and_the_summary_say_what_was_left_out(
    filled: Filled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "later"
    changes = {"--train-to": "2024-04-08", "--validate-from": "2024-04-09"}
    code = main(_train_args(filled, out, **changes, **{"--validate-to": "2024-04-12"}))
    assert code == 0
    printed = capsys.readouterr()
    manifest = verify_artifact(out)
    assert (str(manifest.validation_window.start), str(manifest.validation_window.end)) == (  # type: ignore[union-attr]
        "2024-04-09",
        "2024-04-12",
    )
    declined = manifest.rows["declined_unlabelled_excluded"]
    assert f"excluded  {declined:,} declined without a label" in printed.out
    assert "champion" in printed.out and "CP@100" in printed.out
    # The validation days end within the label delay of --as-of: said, not hidden.
    assert "within the 3-day label delay of the validation days" in printed.err


def test_decisions_stored_without_a_current_feature_are_refused_by_name(filled: Filled) -> None:
    store = SQLiteAuditStore(filled.audit_file)
    try:
        with pytest.raises(TrainingDataError, match="without the features NOT_A_FEATURE"):
            read_window(store, 0, 2**62, 0, [*feature_names(DEFAULT_FEATURES), "NOT_A_FEATURE"])
    finally:
        store.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"--train-from": "2024-04-12", "--train-to": "2024-04-01"}, "is after --train-to"),
        ({"--train-from": "2025-01-01", "--train-to": "2025-01-10"}, "holds no decision"),
        ({"--as-of": "2024-03-01"}, "has a label known by"),
        ({"--validate-from": "2024-04-10"}, "give both --validate-from and --validate-to"),
    ],
)
def test_a_window_that_cannot_train_is_one_clear_line(
    filled: Filled,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, str],
    message: str,
) -> None:
    code = main(_train_args(filled, tmp_path / "out", **changes))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
