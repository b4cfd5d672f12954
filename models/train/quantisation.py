"""Dynamic INT8 quantisation of the student, kept only if it is faster and close enough.

Quantisation trades accuracy for speed; on small transformers on CPU the speed often does
not come (the int8 kernels' set-up outweighs the saved multiply-adds). So it is measured
at build time, on the same sequences and one thread, and the float model ships unless the
quantised one is faster at p50 *and* within ``PROBABILITY_TOLERANCE`` on every row.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from models.metrics import sigmoid
from models.sequence import make_session
from models.sequence_latency import session_latency

PROBABILITY_TOLERANCE = 0.01
REPEATS = 300


def quantise(model: bytes) -> bytes:
    """The model with dynamically quantised (int8) weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="riskscore-quantise-") as work:
        source, target = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        source.write_bytes(model)
        # The quantiser logs advice about pre-processing on the root logger at WARNING.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


def try_quantise(student_onnx: bytes, sequences: np.ndarray) -> tuple[bytes | None, dict[str, Any]]:
    """The quantised model if it earns its place (else None), and the measurements."""
    quantised = quantise(student_onnx)
    float_session, int8_session = make_session(student_onnx), make_session(quantised)
    feed = {"sequences": np.ascontiguousarray(sequences, dtype=np.float32)}
    p_float = sigmoid(np.asarray(float_session.run(None, feed)[0]))
    p_int8 = sigmoid(np.asarray(int8_session.run(None, feed)[0]))
    shift = float(np.max(np.abs(p_float - p_int8)))
    one = sequences[:1]
    float_ms = session_latency(float_session, one, REPEATS)
    int8_ms = session_latency(int8_session, one, REPEATS)
    keep = int8_ms["p50"] < float_ms["p50"] and shift <= PROBABILITY_TOLERANCE
    return (quantised if keep else None), {
        "method": "onnxruntime dynamic quantisation, signed 8-bit weights",
        "float_single_ms": float_ms,
        "int8_single_ms": int8_ms,
        "max_probability_shift": shift,
        "tolerance": PROBABILITY_TOLERANCE,
        "shipped": keep,
    }
