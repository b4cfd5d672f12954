"""Training the second stage end to end on simulated data (tiny nets): teacher, distilled
student, ONNX export checked against torch, band and rule, a loadable artifact."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from features.data import TransactionFrame, frame_from_pandas
from features.simulator import SimulationConfig, simulate
from models.artifacts import MANIFEST_FILE
from models.config import FastModelConfig
from models.errors import ArtifactError
from models.sequence import SequenceModel
from models.sequence_artifacts import STUDENT_FILE, Band, SequenceManifest
from models.train.build_default_sequence_artifact import build_sequence_artifact
from models.train.fast_trainer import WARMUP_DAYS, train_fast_model
from models.train.refit_cascade import kept_student_note, refit_cascade
from models.train.sequence_stage import SequenceStage
from models.train.sequence_trainer import ONNX_TOLERANCE, SequenceTrainingConfig

SIMULATION = SimulationConfig(customers=600, terminals=1000, days=75, seed=11)
Built = tuple[Path, Path, SequenceManifest, SequenceStage]


@pytest.fixture(scope="module")
def history() -> TransactionFrame:
    return frame_from_pandas(simulate(SIMULATION), "simulated")


@pytest.fixture(scope="module")
def artifacts(history: TransactionFrame, tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("stage")
    fast_dir, sequence_dir = root / "fast", root / "sequence"
    train_fast_model(
        history,
        SIMULATION.start + timedelta(days=WARMUP_DAYS),
        SIMULATION.end,
        fast_dir,
        FastModelConfig(validation_days=10, num_threads=1),
        progress=False,
    )
    config = SequenceTrainingConfig().tiny()
    manifest, stage = build_sequence_artifact(
        history, fast_dir, sequence_dir, config, progress=False
    )
    return fast_dir, sequence_dir, manifest, stage


def test_the_artifact_records_teacher_student_band_and_latency(
    artifacts: Built,
) -> None:
    fast_dir, _, manifest, _ = artifacts
    fast = json.loads((fast_dir / MANIFEST_FILE).read_text())
    assert manifest.fast_model_version == fast["model_version"]
    teacher_ap = manifest.teacher["validation"]["average_precision"]
    student_ap = manifest.student["validation"]["average_precision"]
    assert 0 < teacher_ap <= 1 and 0 < student_ap <= 1
    assert manifest.student["ap_retention"] == pytest.approx(student_ap / teacher_ap, abs=1e-4)
    assert manifest.student["onnx_max_abs_diff"] <= ONNX_TOLERANCE
    validation = manifest.validation
    assert 0 < validation["escalated_share"] <= validation["max_escalated_share"]
    # The guard's verdict decides what ships: the fitted band, or the empty one.
    guard = validation["guard"]
    fitted = Band(**validation["fitted_band"])
    assert guard["reason"] and 0 <= fitted.low < fitted.high <= 1
    if guard["verdict"] == "open":
        assert manifest.band == fitted and guard["lift_lower_bound"] > 0
    else:
        assert guard["verdict"] == "closed" and manifest.band.empty
        assert not manifest.band.contains(fitted.low)
    # Early stopping, band choice and guard each had days (and rows) of their own.
    rows = manifest.teacher["rows"]
    assert rows["validation"] > 0 and rows["choice"] > 0 and rows["guard"] == guard["rows"] > 0
    thresholds = validation["thresholds"]
    fast_thresholds = json.loads((fast_dir / MANIFEST_FILE).read_text())["thresholds"]
    assert (thresholds["review"], thresholds["decline"]) == (
        fast_thresholds["review"],
        fast_thresholds["decline"],
    )
    assert set(thresholds["guard_days"]) == {"fast", "cascade"}
    for key in ("teacher_single_p99", "student_single_p99", "student_batch32_p50"):
        assert manifest.latency_ms[key] > 0
    assert manifest.teacher["rows"]["train_sampled_fraud"] > 0


def test_the_nets_were_early_stopped_on_their_own_days_which_the_manifest_names(
    artifacts: Built, history: TransactionFrame
) -> None:
    from models.metrics import average_precision
    from models.train.fast_trainer import compute_training_features
    from models.train.sequence_stage import sequence_data
    from models.train.sequence_trainer import predict_logits

    _, _, manifest, stage = artifacts
    days = manifest.validation["days"]
    order = ["training", "early_stopping", "band_and_rule", "guard"]
    spans = [(days[k]["first"], days[k]["last"]) for k in order]
    # Each step's days come after the previous step's: none is judged on days it chose on.
    assert all(a[1] < b[0] for a, b in pairwise(spans)), spans
    assert days["guard"]["rows"] == manifest.validation["guard"]["rows"]
    assert days["early_stopping"]["last"] in manifest.validation["student"]
    # The AP each net was early-stopped on is its AP on the early-stopping days, and only them.
    data = sequence_data(history, compute_training_features(history, False), manifest.length)
    day = history.day.astype(str)
    stop = np.flatnonzero(
        (day >= days["early_stopping"]["first"]) & (day <= days["early_stopping"]["last"])
    )
    assert len(stop) == days["early_stopping"]["rows"]
    for net in (stage.teacher, stage.student):
        ap = average_precision(data.labels[stop], predict_logits(net.net, data, stop))
        assert ap == pytest.approx(net.validation["average_precision"], abs=1e-9)


def test_onnx_runtime_matches_the_exported_torch_student_within_tolerance(
    artifacts: Built, history: TransactionFrame
) -> None:
    import torch

    from features.offline import compute_features
    from features.sequence import assemble, sequence_index
    from models.train.sequence_net import SequenceNet

    _, sequence_dir, manifest, stage = artifacts
    model = SequenceModel.load(sequence_dir, manifest.fast_model_version)
    features = compute_features(history)
    index = sequence_index(history, manifest.length)
    x = assemble(features, history.epoch_ms, index[-500:])
    onnx_logits = model.logits(x)
    single = model.logits(x[:1])
    with torch.no_grad():
        torch_logits = stage.student.net(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(torch_logits - onnx_logits)) <= ONNX_TOLERANCE
    assert abs(single[0] - torch_logits[0]) <= ONNX_TOLERANCE
    # An untrained net of the same shape does not pass the same check.
    other = SequenceNet(
        SequenceTrainingConfig().tiny().student,
        manifest.length,
        x.shape[-1],
        np.zeros(x.shape[-1], dtype=np.float32),
        np.ones(x.shape[-1], dtype=np.float32),
    ).eval()
    with torch.no_grad():
        unrelated = other(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(unrelated - onnx_logits)) > ONNX_TOLERANCE


def test_a_sequence_model_for_another_fast_model_is_refused(
    artifacts: Built,
) -> None:
    _, sequence_dir, _, _ = artifacts
    with pytest.raises(ArtifactError, match="fitted with fast model"):
        SequenceModel.load(sequence_dir, "fast-20000101-00000000")


def test_a_modified_onnx_file_is_refused(artifacts: Built, tmp_path: Path) -> None:
    _, sequence_dir, manifest, _ = artifacts
    copy = tmp_path / "copy"
    shutil.copytree(sequence_dir, copy)
    data = bytearray((copy / STUDENT_FILE).read_bytes())
    data[-10] ^= 0xFF
    (copy / STUDENT_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256"):
        SequenceModel.load(copy, manifest.fast_model_version)


def test_refitting_the_policy_keeps_the_student_and_states_the_guard(
    artifacts: Built, history: TransactionFrame, tmp_path: Path
) -> None:
    fast_dir, sequence_dir, manifest, _ = artifacts
    target = tmp_path / "refit"
    refit = refit_cascade(history, fast_dir, sequence_dir, target, progress=False)
    assert refit.files == manifest.files  # the same student, byte for byte
    assert refit.model_version == manifest.model_version
    guard = refit.validation["guard"]
    assert guard["verdict"] in ("open", "closed")
    # The kept student's early-stopping days, as its build recorded them, stay stated.
    stop = manifest.validation["days"]["early_stopping"]
    assert refit.validation["days"] == manifest.validation["days"]
    assert f"early-stopped on {stop['first']}..{stop['last']} only" in refit.validation["student"]
    # A build that predates the record early-stopped on every validation day.
    legacy = manifest.model_copy(
        update={"validation": {k: v for k, v in manifest.validation.items() if k != "days"}}
    )
    assert "the guard days included" in kept_student_note(legacy, "D1..D7")
    if guard["verdict"] == "open":
        assert refit.band == Band(**refit.validation["fitted_band"])
    else:
        assert refit.band.empty
    assert SequenceModel.load(target, manifest.fast_model_version).manifest == refit
