"""The fast model's artifact: a directory with ``model.txt`` and ``manifest.json``.

``model.txt`` is LightGBM's own text format (never a pickle). ``manifest.json`` says what
the model is (version, features in order, training window, data checksum, metrics,
thresholds) and lists the SHA-256 of every file it covers. Nothing is loaded before every
listed file has been read and checked against the manifest; readers parse the same bytes
they checked (:func:`read_verified`), so a file swapped after the check cannot slip in.

Writes are atomic per file (temporary file, fsync, rename) and the manifest is written
last, so a reader sees either the old artifact, the new one, or a mismatch it refuses —
never a half-written file it would trust.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import lightgbm as lgb
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.distributions import FeatureDistribution
from models.errors import ArtifactError
from models.thresholds import Thresholds

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
KIND: Final = "fast-lightgbm"
# A manifest is a few KB; anything far larger is not one, so it is not read into memory.
MAX_MANIFEST_BYTES = 1 << 20

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Plain names only: a manifest must never point outside its own directory.
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class DateWindow(BaseModel):
    """An inclusive range of calendar days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateWindow:
        if self.start > self.end:
            raise ValueError(f"window starts {self.start}, after its end {self.end}")
        return self


class Manifest(BaseModel):
    """Everything needed to trust, load and explain one fast-model artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest_version: Literal[1] = 1
    model_version: str = Field(min_length=1, description="fast-YYYYMMDD-<model sha prefix>")
    kind: Literal["fast-lightgbm"] = KIND
    created_at: AwareDatetime
    feature_names: list[str] = Field(min_length=1, description="Model inputs, in column order.")
    num_trees: int = Field(ge=1)
    training_window: DateWindow = Field(description="Calendar days of the training rows.")
    validation_window: DateWindow | None = Field(
        description="The held-out last days (inside training_window) used for early "
        "stopping, metrics and thresholds; the trees never trained on them."
    )
    data_name: str | None = Field(description="File name (no path) of the training data.")
    data_sha256: Sha256 | None = Field(description="SHA-256 of the training data file.")
    rows: dict[str, int] = Field(description="Row and fraud counts of training and validation.")
    metrics: dict[str, float | None] = Field(
        description="Validation metrics; None where undefined (e.g. AP without fraud)."
    )
    lightgbm_version: str
    config: dict[str, Any] = Field(description="FastModelConfig.to_dict() of the training run.")
    thresholds: Thresholds
    files: dict[FileName, Sha256] = Field(description="SHA-256 of every file of the artifact.")
    shape_tradeoff: list[dict[str, Any]] | dict[str, Any] | None = Field(
        default=None, description="Accuracy against SHAP latency per model shape, if measured."
    )
    feature_distributions: dict[str, FeatureDistribution] | None = Field(
        default=None,
        description="Per feature, its training-window bins and shares: the reference that "
        "drift reports compare a later period with (absent in older artifacts).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature_names must be unique")
        if MODEL_FILE not in self.files:
            raise ValueError(f"files must list {MODEL_FILE}")
        if MANIFEST_FILE in self.files:
            raise ValueError(f"{MANIFEST_FILE} cannot list its own checksum")
        return self


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks (training data can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_version(created_at: datetime, model_sha256: str) -> str:
    """``fast-YYYYMMDD-<first 8 hex of the model's SHA-256>``.

    >>> model_version(datetime(2024, 5, 1, tzinfo=UTC), "0123456789abcdef" * 4)
    'fast-20240501-01234567'
    """
    return f"fast-{created_at.astimezone(UTC):%Y%m%d}-{model_sha256[:8]}"


def write_artifact(
    out_dir: str | Path,
    booster: lgb.Booster,
    *,
    training_window: DateWindow,
    validation_window: DateWindow | None,
    data_name: str | None,
    data_sha256: str | None,
    rows: dict[str, int],
    metrics: dict[str, float | None],
    config: dict[str, Any],
    thresholds: Thresholds,
    shape_tradeoff: list[dict[str, Any]] | dict[str, Any] | None = None,
    created_at: datetime | None = None,
    feature_distributions: dict[str, FeatureDistribution] | None = None,
) -> Manifest:
    """Write ``booster`` as ``model.txt`` plus its ``manifest.json`` into ``out_dir``.

    Feature names, tree count and the LightGBM version come from the booster itself, so
    the manifest cannot disagree with the model it describes. ``created_at`` defaults to
    now; a fixed value makes a rebuild byte-identical.
    """
    out = _prepared_dir(out_dir)
    model_bytes = booster.model_to_string().encode("utf-8")
    model_sha = sha256_bytes(model_bytes)
    created = created_at or datetime.now(UTC)
    try:
        manifest = Manifest(
            model_version=model_version(created, model_sha),
            created_at=created,
            feature_names=list(booster.feature_name()),
            num_trees=booster.num_trees(),
            training_window=training_window,
            validation_window=validation_window,
            data_name=data_name,
            data_sha256=data_sha256,
            rows=rows,
            metrics=metrics,
            lightgbm_version=lgb.__version__,
            config=config,
            thresholds=thresholds,
            files={MODEL_FILE: model_sha},
            shape_tradeoff=shape_tradeoff,
            feature_distributions=feature_distributions,
        )
    except ValidationError as exc:
        raise ArtifactError(f"cannot build a valid manifest: {exc}") from exc
    _atomic_write(out / MODEL_FILE, model_bytes)
    write_manifest(out, manifest)
    return manifest


def write_manifest(out_dir: str | Path, manifest: BaseModel) -> None:
    """Atomically (re)write ``manifest.json``, e.g. to add ``shape_tradeoff`` later.

    The manifest does not checksum itself, so rewriting it keeps the artifact valid as long
    as ``files`` still matches the files on disk.
    """
    # pydantic writes a non-finite float as null, so the file is always strict JSON.
    text = manifest.model_dump_json(indent=2) + "\n"
    _atomic_write(_prepared_dir(out_dir) / MANIFEST_FILE, text.encode("utf-8"))


def write_file(out_dir: str | Path, name: str, data: bytes) -> str:
    """Atomically write one artifact file; returns its SHA-256 for the manifest."""
    _atomic_write(_prepared_dir(out_dir) / name, data)
    return sha256_bytes(data)


class _ListsFiles(BaseModel):
    files: dict[FileName, Sha256]


M = TypeVar("M", bound=BaseModel)


def load_manifest(artifact_dir: str | Path) -> Manifest:
    """Parse and validate the fast model's ``manifest.json``."""
    return load_manifest_as(artifact_dir, Manifest)


def read_verified(artifact_dir: str | Path) -> tuple[Manifest, dict[str, bytes]]:
    """The fast model's manifest and files, checked (see :func:`read_verified_as`)."""
    return read_verified_as(artifact_dir, Manifest)


def load_manifest_as(artifact_dir: str | Path, manifest_type: type[M]) -> M:
    """Parse and validate ``manifest.json``; :class:`ArtifactError` if absent or malformed."""
    path = Path(artifact_dir) / MANIFEST_FILE
    raw = _read(path, limit=MAX_MANIFEST_BYTES)
    try:
        return manifest_type.model_validate_json(raw)
    except ValidationError as exc:
        kind = manifest_type.model_fields["kind"].default
        raise ArtifactError(f"{path}: not a valid {kind} manifest: {exc}") from exc


def read_verified_as(
    artifact_dir: str | Path, manifest_type: type[M]
) -> tuple[M, dict[str, bytes]]:
    """The manifest and the contents of every file it lists, each checked against its SHA-256.

    Callers parse the returned bytes, never re-read the files, so what they load is what
    was checked. Any manifest with a ``files`` table (name → SHA-256) works.
    """
    directory = Path(artifact_dir)
    manifest = load_manifest_as(directory, manifest_type)
    listed = _ListsFiles.model_validate(manifest.model_dump(include={"files"})).files
    contents: dict[str, bytes] = {}
    for name, expected in listed.items():
        data = _read(directory / name)
        actual = sha256_bytes(data)
        if actual != expected:
            raise ArtifactError(
                f"{directory / name}: SHA-256 {actual} does not match the manifest's "
                f"{expected}; the file is corrupted, truncated or was modified"
            )
        contents[name] = data
    return manifest, contents


def verify_artifact(artifact_dir: str | Path) -> Manifest:
    """Check every listed file; return the manifest or raise :class:`ArtifactError`."""
    manifest, _ = read_verified(artifact_dir)
    return manifest


def _read(path: Path, limit: int | None = None) -> bytes:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing from the artifact")
    try:
        with path.open("rb") as stream:
            data = stream.read() if limit is None else stream.read(limit + 1)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot be read ({exc})") from exc
    if limit is not None and len(data) > limit:
        raise ArtifactError(f"{path}: larger than {limit} bytes, not a manifest")
    return data


def _prepared_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    # The temporary file lives in the target directory: rename is atomic only within one
    # file system.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are read by other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
