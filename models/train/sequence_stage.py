"""Build a sequence-stage artifact from a history and the fast model it will sit behind."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.data import TransactionFrame
from features.sequence import EXTRA_COLUMNS, SequenceSpec, sequence_index
from models.artifacts import write_file, write_manifest
from models.errors import ArtifactError
from models.metrics import sigmoid
from models.sequence import SequenceModel, make_session
from models.sequence_artifacts import (
    STUDENT_FILE,
    STUDENT_SINGLE_FILE,
    Band,
    Combination,
    SequenceManifest,
    sequence_version,
)
from models.sequence_latency import session_latency
from models.train.cascade_fit import CascadeFit, cascade_scores, fit_cascade
from models.train.cascade_guard import GuardVerdict, guard
from models.train.nested_split import NestedSplit
from models.train.quantisation import PROBABILITY_TOLERANCE, quantise, try_quantise
from models.train.sequence_trainer import (
    ONNX_TOLERANCE,
    SequenceData,
    SequenceTrainingConfig,
    TrainedNet,
    distil_student,
    export_onnx,
    predict_logits,
    sample_rows,
    train_teacher,
)

LATENCY_REPEATS = 300
CHECK_ROWS = 1000


@dataclass
class SequenceStage:
    """A trained teacher and student, their exports and the fitted, guarded cascade.

    ``cascade.band`` is what ships: the fitted band when the guard opened it, else empty
    (the fitted one is in ``cascade.report["fitted_band"]``). ``guard_scores`` holds the
    guard days' labels and fast and served probabilities (for reports on those days).
    """

    spec: SequenceSpec
    teacher: TrainedNet
    student: TrainedNet
    teacher_onnx: bytes
    student_onnx: bytes
    student_single_onnx: bytes
    onnx_max_abs_diff: float
    cascade: CascadeFit
    latency_ms: dict[str, float]
    rows: dict[str, int]
    quantisation: dict[str, Any]
    guard: GuardVerdict
    guard_scores: dict[str, np.ndarray]


def sequence_data(history: TransactionFrame, features: np.ndarray, length: int) -> SequenceData:
    return SequenceData(
        features=features,
        epoch_ms=history.epoch_ms.astype(np.int64),
        index=sequence_index(history, length),
        labels=history.require_labels().astype(np.int8),
    )


def train_sequence_stage(
    data: SequenceData,
    feature_names: tuple[str, ...],
    train_rows: np.ndarray,
    split: NestedSplit,
    fast_raw: tuple[np.ndarray, np.ndarray],
    config: SequenceTrainingConfig,
    progress: bool = True,
) -> SequenceStage:
    """Teacher → student (early-stopped on ``split.stop``) → ONNX (checked) → band and rule
    on ``split.choice`` → the guard's verdict on ``split.guard``.

    ``data`` holds the fast path's feature matrix over the history (see
    :func:`sequence_data`); ``fast_raw`` the fast model's log-odds for the choice and the
    guard rows, from a fast model that never trained on them.
    """
    valid_rows = split.stop
    spec = SequenceSpec(config.length, feature_names)
    sampled = sample_rows(data.labels, train_rows, config.negatives_per_fraud, config.seed)
    teacher = train_teacher(data, sampled, valid_rows, config, progress)
    student = distil_student(teacher.net, data, sampled, valid_rows, config, progress)
    width = spec.width
    dynamic = export_onnx(student.net, config.length, width, batch=None)
    single = export_onnx(student.net, config.length, width, batch=1)
    teacher_onnx = export_onnx(teacher.net, config.length, width, batch=None)
    batch_session = make_session(dynamic)
    single_session = make_session(single)
    check = valid_rows[:: max(1, len(valid_rows) // CHECK_ROWS)]
    torch_logits = predict_logits(student.net, data, check)
    x = data.sequences(check)
    (ort_logits,) = batch_session.run(None, {"sequences": x})
    one = [single_session.run(None, {"sequences": x[i : i + 1]})[0][0] for i in range(50)]
    diff = max(
        float(np.max(np.abs(np.asarray(ort_logits) - torch_logits))),
        float(np.max(np.abs(np.asarray(one) - torch_logits[:50]))),
    )
    if diff > ONNX_TOLERANCE:
        raise ArtifactError(f"ONNX export differs from torch by {diff:.2e} > {ONNX_TOLERANCE}")
    quantisation: dict[str, Any] = {"tried": False}
    if config.quantise:
        quantised, quantisation = try_quantise(dynamic, x)
        if quantised is not None:  # faster and within tolerance: ship int8 ...
            dynamic, single = quantised, quantise(single)
            batch_session = make_session(dynamic)
            # ... and check what ships against torch, in probability.
            shipped = sigmoid(np.asarray(batch_session.run(None, {"sequences": x})[0]))
            one = make_session(single).run(None, {"sequences": x[:1]})[0]
            shift = max(
                float(np.max(np.abs(shipped - sigmoid(torch_logits)))),
                float(abs(sigmoid(np.asarray(one))[0] - sigmoid(torch_logits[:1])[0])),
            )
            if shift > PROBABILITY_TOLERANCE:
                raise ArtifactError(f"quantised student differs from torch by {shift:.3f}")
            quantisation["shipped_max_probability_shift"] = shift
    choice_logits, guard_logits = (
        np.asarray(batch_session.run(None, {"sequences": data.sequences(r)})[0], np.float64)
        for r in (split.choice, split.guard)
    )
    fit, verdict, guard_scores = fit_and_guard(fast_raw, choice_logits, guard_logits, data, split)
    latency = measure_latency(teacher_onnx, dynamic, single, x)
    return SequenceStage(
        spec=spec,
        teacher=teacher,
        student=student,
        teacher_onnx=teacher_onnx,
        student_onnx=dynamic,
        student_single_onnx=single,
        onnx_max_abs_diff=diff,
        cascade=fit,
        latency_ms=latency,
        quantisation=quantisation,
        rows={
            "train_sampled": len(sampled),
            "train_sampled_fraud": int(data.labels[sampled].sum()),
            "validation": len(valid_rows),
            "validation_fraud": int(data.labels[valid_rows].sum()),
            "choice": len(split.choice),
            "choice_fraud": int(data.labels[split.choice].sum()),
            "guard": len(split.guard),
            "guard_fraud": int(data.labels[split.guard].sum()),
        },
        guard=verdict,
        guard_scores=guard_scores,
    )


def fit_and_guard(
    fast_raw: tuple[np.ndarray, np.ndarray],
    choice_logits: np.ndarray,
    guard_logits: np.ndarray,
    data: SequenceData,
    split: NestedSplit,
) -> tuple[CascadeFit, GuardVerdict, dict[str, np.ndarray]]:
    """Band and rule on the choice rows, judged on the guard rows; closed unless shown."""
    fast_choice, fast_guard = fast_raw
    guard_labels = data.labels[split.guard]
    fast_p = sigmoid(fast_guard)
    try:
        fit = fit_cascade(
            fast_choice, choice_logits, data.labels[split.choice], data.epoch_ms[split.choice]
        )
    except ValueError as exc:  # too little fraud to choose on: nothing to guard
        empty = np.zeros(len(split.guard), dtype=bool)
        verdict = guard(guard_labels, fast_p, fast_p, empty, draws=0)
        verdict = replace(verdict, reason=str(exc))
        report = {"fitted_band": None, "guard": verdict.to_json()}
        fit = CascadeFit(Band.closed(), _NO_RULE, report)
        return fit, verdict, {"labels": guard_labels, "fast": fast_p, "cascade": fast_p}
    served, inside = cascade_scores(fit.band, fit.combination, fast_guard, guard_logits)
    verdict = guard(guard_labels, fast_p, served, inside)
    report = {**fit.report, "fitted_band": fit.band.model_dump(), "guard": verdict.to_json()}
    if not verdict.open:
        served = fast_p
    band = fit.band if verdict.open else Band.closed()
    scores = {"labels": guard_labels, "fast": fast_p, "cascade": served}
    return CascadeFit(band, fit.combination, report), verdict, scores


# What an artifact whose band could not even be chosen carries: never used (its band is
# empty), it says "the fast score alone".
_NO_RULE = Combination(intercept=0.0, fast_weight=1.0, sequence_weight=0.0)


def measure_latency(
    teacher_onnx: bytes, student_onnx: bytes, student_single_onnx: bytes, sequences: np.ndarray
) -> dict[str, float]:
    """Milliseconds per call, one thread: single sequences and batches of 32."""
    full = sequences[np.argsort(-sequences[:, :, -1].sum(axis=1), kind="stable")]
    one, batch = full[:1], full[:32]
    teacher = make_session(teacher_onnx)
    student = make_session(student_onnx)
    student_single = make_session(student_single_onnx)
    out: dict[str, float] = {}
    for name, session, x in (
        ("teacher_single", teacher, one),
        ("teacher_batch32", teacher, batch),
        ("student_single", student_single, one),
        ("student_single_dynamic_export", student, one),
        ("student_batch32", student, batch),
    ):
        for stat, value in session_latency(session, x, LATENCY_REPEATS).items():
            out[f"{name}_{stat}"] = value
    # What the cascade admits on: a full sequence plus one variant per earlier payment.
    occlusion = np.repeat(one, one.shape[1], axis=0)
    for stat, value in session_latency(student, occlusion, LATENCY_REPEATS).items():
        out[f"student_attribution_{stat}"] = value
    return out


def write_sequence_artifact(
    out_dir: str | Path,
    stage: SequenceStage,
    fast_model_version: str,
    config: SequenceTrainingConfig,
    created_at: datetime | None = None,
) -> SequenceManifest:
    """Write the student's ONNX files and the manifest (last); return the manifest."""
    created = created_at or datetime.now(UTC)
    files = {
        STUDENT_FILE: write_file(out_dir, STUDENT_FILE, stage.student_onnx),
        STUDENT_SINGLE_FILE: write_file(out_dir, STUDENT_SINGLE_FILE, stage.student_single_onnx),
    }
    teacher_ap = stage.teacher.validation.get("average_precision")
    student_ap = stage.student.validation.get("average_precision")
    student: dict[str, Any] = {
        "shape": config.student.to_dict(),
        "best_epoch": stage.student.best_epoch,
        "epochs": stage.student.epochs,
        "validation": stage.student.validation,
        "ap_retention": (
            None if not teacher_ap or student_ap is None else round(student_ap / teacher_ap, 4)
        ),
        "temperature": config.temperature,
        "alpha": config.alpha,
        "onnx_max_abs_diff": stage.onnx_max_abs_diff,
        "quantisation": stage.quantisation,
    }
    manifest = SequenceManifest(
        model_version=sequence_version(created, files[STUDENT_FILE]),
        created_at=created,
        fast_model_version=fast_model_version,
        length=stage.spec.length,
        max_age_ms=stage.spec.max_age_ms,
        feature_names=list(stage.spec.feature_names),
        column_names=[*stage.spec.feature_names, *EXTRA_COLUMNS],
        band=stage.cascade.band,
        combination=stage.cascade.combination,
        teacher={
            "shape": config.teacher.to_dict(),
            "best_epoch": stage.teacher.best_epoch,
            "epochs": stage.teacher.epochs,
            "validation": stage.teacher.validation,
            "rows": stage.rows,
        },
        student=student,
        latency_ms=stage.latency_ms,
        validation=stage.cascade.report,
        files=files,
    )
    write_manifest(out_dir, manifest)
    SequenceModel.load(out_dir, fast_model_version)  # what serving will do, once, now
    return manifest
