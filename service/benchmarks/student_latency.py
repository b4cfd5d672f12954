"""The shipped student's latency alone, as serving calls it (ONNX Runtime, one thread).

    python -m service.benchmarks.student_latency [--model DIR] [--repeats N] [--json OUT]

The sequence artifact's build measures the same on its way (the manifest's
``latency_ms``), but a build runs for many minutes and its figure is only as quiet as the
machine was then; this measures the installed files again, on full 32-payment sequences
(the longest the student sees), one payment and a batch of 32.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.artifact_paths import default_sequence_artifact_dir
from models.sequence import SequenceModel
from models.sequence_latency import time_calls


def full_sequences(model: SequenceModel, count: int, seed: int = 0) -> np.ndarray:
    """``count`` sequences with every position a payment (no padding), seeded."""
    spec = model.spec
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 50, size=(count, spec.length, spec.width)).astype(np.float32)
    x[:, :, -2] = np.arange(spec.length)[::-1] * 3600.0  # seconds before the current one
    x[:, :, -1] = 1.0  # every position holds a payment
    return x


def measure(model_dir: Path, repeats: int) -> dict[str, dict[str, float]]:
    model = SequenceModel.load(model_dir)
    x = full_sequences(model, 32)
    one = x[:1]
    return {
        "student_single": time_calls(lambda: model.logits(one), repeats),
        "student_batch32": time_calls(lambda: model.logits(x), repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.student_latency",
        description="p50 and p99 of the shipped student, one sequence and a batch of 32.",
    )
    parser.add_argument("--model", type=Path, default=None, metavar="DIR", help="artifact dir")
    parser.add_argument("--repeats", type=int, default=2000, metavar="N", help="timed calls")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write figures")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    model_dir = args.model or default_sequence_artifact_dir()
    figures = measure(model_dir, args.repeats)
    for name, stats in figures.items():
        print(f"{name}: p50 {stats['p50']:.4f} ms, p99 {stats['p99']:.4f} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
