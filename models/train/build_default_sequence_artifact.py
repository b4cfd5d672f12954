"""Rebuild the shipped sequence stage (``models/default_sequence_artifact``) from scratch.

    python -m models.train.build_default_sequence_artifact [--out DIR] [--tiny]

Needs torch (``pip install -e .[train]``). Simulates the same history as the shipped fast
model, trains teacher and student on the fast model's training days, and splits its
validation days by time (``models/train/nested_split.py``): early stopping on the first,
the band and the combination rule on the middle ones, the guard on the last (the band ships
only if the lift there is shown positive). Exports, verifies and installs. The manifest's
``validation`` says which band was fitted, the guard's verdict and why, what the fast
model's review and decline thresholds do on the guard days with and without the stage, and
(``days``) which days trained the nets and which each later step used.
Seeds are fixed; torch does not promise bit-identical training across machines,
so a rebuild elsewhere gives an equivalent model, not necessarily the same bytes.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from features.data import TransactionFrame, load_transactions
from features.definitions import DEFAULT_FEATURES
from features.simulator import simulate, write_csv
from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.artifacts import MANIFEST_FILE
from models.fast import FastModel
from models.sequence_artifacts import SequenceManifest
from models.thresholds import outcome
from models.train.build_default_artifact import DEFAULT_SIMULATION, _data_name
from models.train.fast_trainer import compute_training_features
from models.train.nested_split import nested_split, split_days
from models.train.sequence_stage import (
    SequenceStage,
    sequence_data,
    train_sequence_stage,
    write_sequence_artifact,
)
from models.train.sequence_trainer import SequenceTrainingConfig


def build_sequence_artifact(
    history: TransactionFrame,
    fast_dir: Path,
    target: Path,
    config: SequenceTrainingConfig,
    progress: bool = True,
) -> tuple[SequenceManifest, SequenceStage]:
    """Train the stage behind the fast model in ``fast_dir`` on its own training window."""
    fast = FastModel.load(fast_dir)
    fast_manifest = fast.manifest
    if fast_manifest.validation_window is None:
        raise ValueError(f"{fast_dir}: the fast model has no validation window to fit on")
    days = history.day
    last = np.datetime64(fast_manifest.training_window.end, "D")
    upto = np.flatnonzero(days <= last)
    history = history.take(upto)
    days = days[upto]
    features = compute_training_features(history, progress)
    valid_from = np.datetime64(fast_manifest.validation_window.start, "D")
    first = np.datetime64(fast_manifest.training_window.start, "D")
    train_rows = np.flatnonzero((days >= first) & (days < valid_from))
    valid_rows = np.flatnonzero(days >= valid_from)
    split = nested_split(valid_rows, days[valid_rows].astype(np.int64))
    fast_raw = (fast.predict_raw(features[split.choice]), fast.predict_raw(features[split.guard]))
    stage = train_sequence_stage(
        sequence_data(history, features, config.length),
        tuple(d.name for d in DEFAULT_FEATURES),
        train_rows,
        split,
        fast_raw,
        config,
        progress,
    )
    stage.cascade.report["thresholds"] = threshold_report(fast, stage.guard_scores)
    used = split_days(split, days)
    stop = used["early_stopping"]
    stage.cascade.report["days"] = {
        "training": {
            "first": str(days[train_rows].min()),
            "last": str(days[train_rows].max()),
            "rows": len(train_rows),
        },
        **used,
    }
    stage.cascade.report["student"] = (
        "trained by this build; teacher and student early-stopped on "
        f"{stop['first']}..{stop['last']} only, none of the band's or the guard's days"
    )
    created_at = fast_manifest.created_at + timedelta(hours=1)
    manifest = write_sequence_artifact(target, stage, fast.version, config, created_at)
    return manifest, stage


def threshold_report(fast: FastModel, scores: dict[str, np.ndarray]) -> dict[str, object]:
    """The fast model's thresholds on the guard days: fast score alone vs the served score.

    The thresholds live in the fast model's manifest and apply to the served score; the
    quantile map keeps in-band traffic on the fast score's scale, so they keep their
    traffic shares. This is the check, on days that chose neither.
    """
    t = fast.thresholds
    return {
        "fast_model_version": fast.version,
        "review": t.review,
        "decline": t.decline,
        "where": "the fast model's manifest; they apply to the served score",
        "guard_days": {
            name: outcome(scores["labels"], scores[name], t.review, t.decline).model_dump()
            for name in ("fast", "cascade")
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.train.build_default_sequence_artifact",
        description=(
            "Regenerate the shipped sequence stage: simulate the fast model's history, train "
            "the teacher, distil the student, export both ONNX files, fit band and rule."
        ),
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="artifact dir")
    parser.add_argument("--tiny", action="store_true", help="small nets, 2 epochs (tests)")
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="torch threads (default: 2)"
    )
    args = parser.parse_args(argv)
    config = SequenceTrainingConfig()
    if args.threads is not None:
        config = replace(config, threads=max(1, args.threads))
    if args.tiny:
        config = config.tiny()
    target = args.out or default_sequence_artifact_dir()
    with tempfile.TemporaryDirectory(prefix="riskscore-sequence-") as work:
        data = Path(work) / _data_name(DEFAULT_SIMULATION)
        write_csv(simulate(DEFAULT_SIMULATION, progress=True), data)
        history = load_transactions(data)
        manifest, _ = build_sequence_artifact(history, default_artifact_dir(), target, config)
    size = sum((target / n).stat().st_size for n in [*manifest.files, MANIFEST_FILE])
    print(
        f"{manifest.model_version}: band [{manifest.band.low}, {manifest.band.high}) "
        f"(guard: {manifest.validation['guard']['reason']}), "
        f"teacher AP {manifest.teacher['validation']['average_precision']}, "
        f"student AP {manifest.student['validation']['average_precision']} "
        f"(retention {manifest.student['ap_retention']}), student p99 "
        f"{manifest.latency_ms['student_single_p99']} ms, {size:,} bytes -> {target}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
