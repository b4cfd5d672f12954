"""The fast path at serving time: a verified LightGBM artifact behind a tiny contract.

``FastModel.load`` checks the artifact before parsing anything and parses the very bytes
it checked. ``ModelSlot`` holds the model being served and replaces it only with one that
has fully loaded, so a bad artifact never takes scoring down.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np

from models.artifacts import MODEL_FILE, Manifest, read_verified
from models.errors import ArtifactError, ModelNotReady
from models.forest import CompiledPredictor, Forest, UnsupportedModel, read_forest
from models.thresholds import Thresholds

# One thread per prediction: for the single rows of live scoring, OpenMP start-up costs far
# more than the trees (measured ~0.2 ms with 1 thread against ~1-8 ms with 2+).
DEFAULT_PREDICT_THREADS = 1
# "compiled": the trees walked by compiled code, the same doubles as LightGBM without its
# ~80 µs per-call set-up; "lightgbm": Booster.predict itself (the reference).
Predictor = Literal["compiled", "lightgbm"]
DEFAULT_PREDICTOR: Predictor = "compiled"


class FastModel:
    """A loaded, verified fast model. Use :meth:`load`; the constructor trusts its inputs."""

    def __init__(
        self,
        booster: lgb.Booster,
        manifest: Manifest,
        num_threads: int = DEFAULT_PREDICT_THREADS,
        predictor: Predictor = DEFAULT_PREDICTOR,
    ) -> None:
        self._booster = booster
        self._manifest = manifest
        self._num_threads = num_threads
        self._num_features = len(manifest.feature_names)
        self.forest: Forest = read_forest(booster)
        self.predictor: Predictor = predictor
        self._compiled = CompiledPredictor(self.forest) if predictor == "compiled" else None

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        num_threads: int = DEFAULT_PREDICT_THREADS,
        predictor: Predictor = DEFAULT_PREDICTOR,
    ) -> FastModel:
        """Verify the artifact, then parse the checked model text; :class:`ArtifactError` if not."""
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        manifest, contents = read_verified(artifact_dir)
        booster = _parse_booster(Path(artifact_dir) / MODEL_FILE, contents[MODEL_FILE])
        _check_consistent(manifest, booster)
        try:
            return cls(booster, manifest, num_threads, predictor)
        except UnsupportedModel as exc:
            raise ArtifactError(f"{artifact_dir}: {exc}") from exc

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def version(self) -> str:
        return self._manifest.model_version

    @property
    def feature_names(self) -> list[str]:
        return list(self._manifest.feature_names)

    @property
    def thresholds(self) -> Thresholds:
        return self._manifest.thresholds

    @property
    def booster(self) -> lgb.Booster:
        """The underlying booster, for exact TreeSHAP (``pred_contrib``) in ``explain/``."""
        return self._booster

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Fraud probability per row of an ``(n, k)`` matrix in ``feature_names`` order."""
        return np.asarray(
            self._booster.predict(self._checked(x), num_threads=self._num_threads),
            dtype=np.float64,
        )

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Log-odds per row: the sum the SHAP values of a row add up to."""
        if self._compiled is not None:
            return self._compiled.predict_raw(self._checked(x))
        return np.asarray(
            self._booster.predict(self._checked(x), raw_score=True, num_threads=self._num_threads),
            dtype=np.float64,
        )

    def predict_one(self, row: Sequence[float] | np.ndarray) -> float:
        """Fraud probability of one feature vector."""
        return float(self.predict_proba(np.asarray(row, dtype=np.float64).reshape(1, -1))[0])

    def _checked(self, x: np.ndarray) -> np.ndarray:
        # A plain float64 array: no pandas names for LightGBM to compare, and a shape error
        # here is clearer than LightGBM's.
        array = np.asarray(x, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self._num_features:
            raise ValueError(
                f"expected an (n, {self._num_features}) feature matrix, got shape {array.shape}"
            )
        return array


def _parse_booster(path: Path, data: bytes) -> lgb.Booster:
    try:
        return lgb.Booster(model_str=data.decode("utf-8"))
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ArtifactError(f"{path}: not a LightGBM text model ({exc})") from exc


def _check_consistent(manifest: Manifest, booster: lgb.Booster) -> None:
    names = list(booster.feature_name())
    if names != manifest.feature_names:
        raise ArtifactError(
            f"{MODEL_FILE} has features {names}, the manifest lists {manifest.feature_names}"
        )
    if booster.num_trees() != manifest.num_trees:
        raise ArtifactError(
            f"{MODEL_FILE} has {booster.num_trees()} trees, the manifest says {manifest.num_trees}"
        )


class ModelSlot:
    """The model being served; :meth:`swap` replaces it only with a fully loaded one.

    Readers take ``slot.model`` once per request: a swap rebinds one attribute, which is
    atomic, so a request scores entirely with the old model or entirely with the new one.
    """

    def __init__(self, model: FastModel | None = None) -> None:
        self._model = model

    @property
    def model(self) -> FastModel:
        """The current model; :class:`ModelNotReady` before the first successful load."""
        model = self._model
        if model is None:
            raise ModelNotReady("no fast model is loaded yet")
        return model

    @property
    def ready(self) -> bool:
        return self._model is not None

    def put(self, model: FastModel) -> None:
        """Serve ``model``, already loaded and verified, from the next read on."""
        self._model = model

    def swap(
        self,
        artifact_dir: str | Path,
        num_threads: int = DEFAULT_PREDICT_THREADS,
        predictor: Predictor = DEFAULT_PREDICTOR,
    ) -> FastModel:
        """Load the artifact, then serve it; on any failure the old model keeps serving.

        Returns the new model; the loading error propagates unchanged.
        """
        new = FastModel.load(artifact_dir, num_threads=num_threads, predictor=predictor)
        self._model = new
        return new
