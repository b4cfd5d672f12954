"""Rebuild the shipped default fast model (``models/default_artifact``) from scratch.

    python -m models.train.build_default_artifact [--out DIR]

Simulates a history (no downloaded data), trains on it with fixed options and a fixed
timestamp, verifies the result in a staging directory next to the target and only then
moves it into place, manifest last. The same code and library versions give byte-identical
``model.txt`` and ``manifest.json``. Needs no torch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from features.data import load_transactions
from features.simulator import SimulationConfig, simulate, write_csv
from models.artifact_paths import default_artifact_dir
from models.artifacts import MANIFEST_FILE, Manifest, verify_artifact
from models.config import FastModelConfig
from models.train.fast_trainer import WARMUP_DAYS, train_fast_model

DEFAULT_SIMULATION = SimulationConfig(customers=2000, terminals=4000, days=120, seed=7)
# A week of validation holds a few hundred frauds, enough for stable thresholds. One
# thread: the trees do not depend on the machine's core count, and a busy machine does
# not slow OpenMP to a crawl.
DEFAULT_TRAINING = FastModelConfig(validation_days=7, num_threads=1)


def build_default_artifact(
    target: Path | None = None,
    simulation: SimulationConfig = DEFAULT_SIMULATION,
    config: FastModelConfig = DEFAULT_TRAINING,
    progress: bool = True,
) -> Manifest:
    """Simulate, train and install the artifact into ``target`` (default: the shipped one).

    Trains on every simulated day after the ``WARMUP_DAYS`` the features need to fill their
    windows. ``created_at`` is the midnight after the last training day, the earliest
    moment the model could exist, which keeps the build reproducible.
    """
    target = default_artifact_dir() if target is None else target
    train_from = simulation.start + timedelta(days=WARMUP_DAYS)
    train_to = simulation.end
    if train_from >= train_to:
        raise ValueError(f"simulate more than {WARMUP_DAYS + 1} days to leave a training window")
    created_at = datetime.combine(train_to + timedelta(days=1), time(0), tzinfo=UTC)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="riskscore-default-") as work,
        # Staging beside the target: os.replace is atomic only within one file system.
        tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as staging,
    ):
        data = Path(work) / _data_name(simulation)
        write_csv(simulate(simulation, progress=progress), data)
        history = load_transactions(data)
        train_fast_model(
            history,
            train_from,
            train_to,
            staging,
            config,
            data_path=data,
            progress=progress,
            created_at=created_at,
        )
        manifest = verify_artifact(staging)
        _install(Path(staging), target, manifest)
    return verify_artifact(target)


def _data_name(simulation: SimulationConfig) -> str:
    # The name records how to regenerate the data; the manifest keeps it with the checksum.
    s = simulation
    return (
        f"simulated-c{s.customers}-t{s.terminals}-d{s.days}-{s.start.isoformat()}-seed{s.seed}"
        ".csv.gz"
    )


def _install(staging: Path, target: Path, manifest: Manifest) -> None:
    target.mkdir(parents=True, exist_ok=True)
    # Model files first, manifest last: until the new manifest lands, a reader sees a
    # checksum mismatch and refuses, never a mix it would trust.
    for name in [*manifest.files, MANIFEST_FILE]:
        os.replace(staging / name, target / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.train.build_default_artifact",
        description=(
            "Regenerate the shipped default fast model: simulate "
            f"{DEFAULT_SIMULATION.customers} customers, {DEFAULT_SIMULATION.terminals} "
            f"terminals, {DEFAULT_SIMULATION.days} days (seed {DEFAULT_SIMULATION.seed}), "
            "train, verify, install."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="artifact directory (default: the package's models/default_artifact)",
    )
    args = parser.parse_args(argv)
    manifest = build_default_artifact(args.out)
    target = args.out or default_artifact_dir()
    size = sum((target / name).stat().st_size for name in [*manifest.files, MANIFEST_FILE])
    metrics = manifest.metrics
    print(
        f"{manifest.model_version}: {manifest.num_trees} trees, "
        f"validation AP {metrics['validation_average_precision']}, "
        f"ROC AUC {metrics['validation_roc_auc']}, review >= {manifest.thresholds.review:.4f}, "
        f"decline >= {manifest.thresholds.decline:.4f}, {size:,} bytes -> {target}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
