"""Refit the shipped stage's band, rule, map and guard without retraining the student.

    python -m models.train.refit_cascade [--out DIR]

Training teacher and student takes most of a rebuild (about 6 minutes on 2 idle cores,
hours on a crowded machine); the cascade policy around the student (band, rule, quantile
map, guard) takes seconds once the history's features are computed. This keeps the shipped
student's ONNX files (their SHA-256 unchanged) and refits the policy on the nested split of
the fast model's validation days (``models/train/nested_split.py``): band and rule on the
middle days, the guard on the last. The manifest says which days the kept student was
early-stopped on: its own build's early-stopping days when that build recorded them (a full
rebuild, ``python -m models.train.build_default_sequence_artifact``, does), else all of
the validation days: then its epoch choice (one of a few) saw the guard days.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from features.data import TransactionFrame, load_transactions
from features.simulator import simulate, write_csv
from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.artifacts import write_manifest
from models.fast import FastModel
from models.sequence import SequenceModel
from models.sequence_artifacts import SequenceManifest
from models.train.build_default_artifact import DEFAULT_SIMULATION, _data_name
from models.train.build_default_sequence_artifact import threshold_report
from models.train.fast_trainer import compute_training_features
from models.train.nested_split import nested_split
from models.train.sequence_stage import fit_and_guard, sequence_data

CHUNK = 4096  # sequences per ONNX call: bounded memory


def refit_cascade(
    history: TransactionFrame,
    fast_dir: Path,
    sequence_dir: Path,
    target: Path,
    progress: bool = True,
) -> SequenceManifest:
    """Refit the policy of the stage in ``sequence_dir`` and write it to ``target``."""
    fast = FastModel.load(fast_dir)
    stage = SequenceModel.load(sequence_dir, fast.version)
    window = fast.manifest.validation_window
    if window is None:
        raise ValueError(f"{fast_dir}: the fast model has no validation window to fit on")
    days = history.day
    upto = np.flatnonzero(days <= np.datetime64(fast.manifest.training_window.end, "D"))
    history, days = history.take(upto), days[upto]
    features = compute_training_features(history, progress)
    valid_rows = np.flatnonzero(days >= np.datetime64(window.start, "D"))
    split = nested_split(valid_rows, days[valid_rows].astype(np.int64))
    data = sequence_data(history, features, stage.manifest.length)

    def logits(rows: np.ndarray) -> np.ndarray:
        parts = [
            stage.logits(data.sequences(p))
            for p in np.array_split(rows, max(1, len(rows) // CHUNK))
        ]
        return np.concatenate(parts).astype(np.float64)

    fast_raw = (fast.predict_raw(features[split.choice]), fast.predict_raw(features[split.guard]))
    fit, _, scores = fit_and_guard(fast_raw, logits(split.choice), logits(split.guard), data, split)
    old = stage.manifest
    rows = {
        **old.teacher.get("rows", {}),
        "choice": len(split.choice),
        "choice_fraud": int(data.labels[split.choice].sum()),
        "guard": len(split.guard),
        "guard_fraud": int(data.labels[split.guard].sum()),
    }
    validation = {
        **fit.report,
        "thresholds": threshold_report(fast, scores),
        "student": kept_student_note(old, f"{window.start}..{window.end}"),
    }
    if "days" in old.validation:  # the nets' days are the kept student's, still true
        validation["days"] = old.validation["days"]
    manifest = old.model_copy(
        update={
            "band": fit.band,
            "combination": fit.combination,
            "teacher": {**old.teacher, "rows": rows},
            "validation": validation,
        }
    )
    if target.resolve() != sequence_dir.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for name in old.files:
            shutil.copyfile(sequence_dir / name, target / name)
    write_manifest(target, manifest)
    SequenceModel.load(target, fast.version)  # what serving will do, once, now
    return manifest


def kept_student_note(old: SequenceManifest, validation_days: str) -> str:
    """Which days the kept student was early-stopped on, as its own build recorded them.

    A build that predates the record (no ``days`` in its manifest) early-stopped on every
    validation day, the guard's included.
    """
    stop = old.validation.get("days", {}).get("early_stopping")
    if stop is None:
        return (
            "kept from the previous build (same ONNX files); it was early-stopped on all "
            f"validation days {validation_days}, the guard days included"
        )
    return (
        "kept from the previous build (same ONNX files); it was early-stopped on "
        f"{stop['first']}..{stop['last']} only, none of the band's or the guard's days"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.train.refit_cascade",
        description=(
            "Refit the shipped sequence stage's band, rule, quantile map and guard on the "
            "nested split of the fast model's validation days, keeping its student."
        ),
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="artifact dir")
    args = parser.parse_args(argv)
    source = default_sequence_artifact_dir()
    target = args.out or source
    with tempfile.TemporaryDirectory(prefix="riskscore-refit-") as work:
        data = Path(work) / _data_name(DEFAULT_SIMULATION)
        write_csv(simulate(DEFAULT_SIMULATION, progress=True), data)
        manifest = refit_cascade(load_transactions(data), default_artifact_dir(), source, target)
    guard = manifest.validation["guard"]
    print(
        f"{manifest.model_version}: band [{manifest.band.low}, {manifest.band.high}), "
        f"guard {guard['verdict']}: {guard['reason']} -> {target}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
