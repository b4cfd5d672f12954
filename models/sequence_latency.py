"""Latency of the sequence models as serving runs them (ONNX Runtime, one thread)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from models.sequence import INPUT_NAME


def time_calls(call: Callable[[], object], repeats: int, warmup: int = 20) -> dict[str, float]:
    """p50 and p99 in milliseconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        call()
        samples[i] = time.perf_counter() - started
    p50, p99 = np.percentile(samples * 1000.0, [50, 99])
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}


def session_latency(
    session: ort.InferenceSession, sequences: np.ndarray, repeats: int
) -> dict[str, float]:
    """Latency of one call on ``sequences`` (its batch is the call's batch)."""
    feed = {INPUT_NAME: np.ascontiguousarray(sequences, dtype=np.float32)}
    return time_calls(lambda: session.run(None, feed), repeats)
