"""The sequence stage at serving time: the distilled student, run by ONNX Runtime.

Serving needs no torch. Two sessions of the same network: one exported with the batch
fixed at 1 (a single payment, the common case) and one with a dynamic batch (batches and
occlusion attributions, where the sequence is re-scored once per left-out transaction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from features.sequence import SequenceSpec
from models.artifacts import read_verified_as
from models.errors import ArtifactError
from models.sequence_artifacts import STUDENT_FILE, STUDENT_SINGLE_FILE, SequenceManifest

INPUT_NAME = "sequences"
# Serving runs one payment at a time on the event loop's helper thread: intra-op threads
# would only contend with the event loop for the same cores.
DEFAULT_THREADS = 1


def make_session(model: bytes, threads: int = DEFAULT_THREADS) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class SequenceModel:
    """A loaded, verified student. Use :meth:`load`."""

    def __init__(
        self,
        manifest: SequenceManifest,
        single: ort.InferenceSession,
        batch: ort.InferenceSession,
    ) -> None:
        self.manifest = manifest
        self.spec = SequenceSpec(
            manifest.length, tuple(manifest.feature_names), manifest.max_age_ms
        )
        self._single = single
        self._batch = batch

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        fast_model_version: str | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> SequenceModel:
        """Verify and load; refuse an artifact fitted against another fast model."""
        manifest, contents = read_verified_as(artifact_dir, SequenceManifest)
        if fast_model_version is not None and manifest.fast_model_version != fast_model_version:
            raise ArtifactError(
                f"{artifact_dir}: the sequence model {manifest.model_version} was fitted with "
                f"fast model {manifest.fast_model_version}, but {fast_model_version} is "
                "loaded; its band and combination would not fit — rebuild it for this model"
            )
        try:
            single = make_session(contents[STUDENT_SINGLE_FILE], threads)
            batch = make_session(contents[STUDENT_FILE], threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArtifactError(f"{artifact_dir}: ONNX Runtime cannot load it: {exc}") from exc
        return cls(manifest, single, batch)

    @property
    def version(self) -> str:
        return self.manifest.model_version

    def logits(self, sequences: np.ndarray) -> np.ndarray:
        """Logits for sequences of shape (n, length, width)."""
        x = np.ascontiguousarray(sequences, dtype=np.float32)
        session = self._single if len(x) == 1 else self._batch
        (out,) = session.run(None, {INPUT_NAME: x})
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def explain(self, sequences: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        """Per sequence: its logit and each earlier transaction's occlusion effect.

        The effect of a transaction is the logit with the whole sequence minus the logit
        with that one position turned into padding. Effects are in position order over the
        real earlier transactions (the current payment, always last, is not left out).
        All variants of all sequences go through one batched call.
        """
        rows: list[np.ndarray] = []
        spans: list[tuple[int, np.ndarray]] = []
        for values in sequences:
            real = np.flatnonzero(values[:-1, -1] > 0)
            variants = np.repeat(values[None], len(real) + 1, axis=0)
            for k, position in enumerate(real, start=1):
                variants[k, position] = 0.0
            spans.append((len(rows), real))
            rows.extend(variants)
        logits = self.logits(np.stack(rows)) if rows else np.empty(0)
        out = []
        for start, real in spans:
            full = float(logits[start])
            out.append((full, full - logits[start + 1 : start + 1 + len(real)]))
        return out
