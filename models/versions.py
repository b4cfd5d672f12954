"""A model directory of versions, and which one is the champion.

Two layouts are accepted, so that a single artifact keeps working as it always has:

- an artifact directory (``manifest.json`` and ``model.txt`` at its top): one version,
  paired with the sequence artifact given beside it; nothing to promote, nothing persisted;
- a directory of versions: each subdirectory holding a fast-model artifact is a version,
  its sequence artifact (if any) in its ``sequence/`` subdirectory, and the file
  ``champion`` names the version being served (its ``model_version``), written atomically
  on every promotion, so that a restart and every other process sharing the directory
  serve the same one. The file ``challenger`` beside it names the version scoring in the
  shadow of the champion (``service/challenger.py``), if any; written the same way.

A version is known by its fast model's ``model_version`` (what every decision records) or
by its directory name. Listing reads the manifests only; a version is verified (every
file against its SHA-256) when it is loaded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.artifacts import MANIFEST_FILE, Manifest, load_manifest, load_manifest_as, write_file
from models.errors import ArtifactError
from models.sequence_artifacts import SequenceManifest

log = logging.getLogger(__name__)

POINTER_FILE = "champion"
CHALLENGER_FILE = "challenger"
SEQUENCE_DIR = "sequence"
# A pointer names one version: anything longer is not one.
MAX_POINTER_BYTES = 1024


class ChampionFileError(ArtifactError):
    """The champion file cannot be written (a read-only or full file system): the versions
    are fine, the directory is not writable."""


@dataclass(frozen=True)
class ModelVersion:
    """One version: a fast-model artifact and the sequence artifact beside it, if any."""

    name: str
    fast_dir: Path
    sequence_dir: Path | None
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.model_version

    def sequence_manifest(self) -> SequenceManifest | None:
        """The sequence artifact's manifest (unverified), None when there is none."""
        if self.sequence_dir is None:
            return None
        return load_manifest_as(self.sequence_dir, SequenceManifest)

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows of this version (from its manifests)."""
        m = self.manifest
        sequence: dict[str, Any] | None = None
        try:
            seq = self.sequence_manifest()
        except ArtifactError as exc:
            sequence = {"error": str(exc)}
        else:
            if seq is not None:
                sequence = {
                    "version": seq.model_version,
                    "fast_model_version": seq.fast_model_version,
                    "matches": seq.fast_model_version == m.model_version,
                    "sha256": dict(seq.files),
                }
        return {
            "version": m.model_version,
            "directory": self.name,
            "created_at": m.created_at.isoformat(),
            "sha256": dict(m.files),
            "training_window": m.training_window.model_dump(mode="json"),
            "validation_window": (
                None if m.validation_window is None else m.validation_window.model_dump(mode="json")
            ),
            "validation_metrics": dict(m.metrics),
            "thresholds": {"review": m.thresholds.review, "decline": m.thresholds.decline},
            "sequence": sequence,
        }


class ModelDirectory:
    """The versions under one root, and its champion pointer (versioned layout only)."""

    def __init__(self, root: Path, sequence_dir: Path | None = None) -> None:
        self.root = root
        # An artifact at the top: today's single-artifact layout.
        self.versioned = not (root / MANIFEST_FILE).exists()
        self._single_sequence = sequence_dir

    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first (by ``created_at``, then name); unreadable ones and
        ``model_version``s found in more than one directory are logged and left out, so one
        broken directory does not hide the others."""
        return self._scan()[0]

    def find(self, key: str) -> ModelVersion | None:
        """The version whose ``model_version`` (first) or directory name is ``key``;
        :class:`ArtifactError` if ``key`` names a version found in several directories."""
        versions, ambiguous = self._scan()
        for version in versions:
            if version.version == key:
                return version
        for model_version, names in ambiguous.items():
            if key == model_version or key in names:
                raise ArtifactError(_ambiguous(model_version, names))
        return next((v for v in versions if v.name == key), None)

    def _scan(self) -> tuple[list[ModelVersion], dict[str, list[str]]]:
        """The versions, and the directories of each ``model_version`` found more than once
        (which of them the champion file means cannot be told: none is served)."""
        if not self.versioned:
            single = ModelVersion(
                self.root.name, self.root, self._single_sequence, load_manifest(self.root)
            )
            return [single], {}
        if not self.root.is_dir():
            raise ArtifactError(f"{self.root}: not a directory of model versions")
        found: dict[str, list[ModelVersion]] = {}
        for child in sorted(self.root.iterdir()):
            if not (child / MANIFEST_FILE).is_file():
                continue
            try:
                manifest = load_manifest(child)
            except ArtifactError as exc:
                log.warning("model version %s left out: %s", child.name, exc)
                continue
            sequence = child / SEQUENCE_DIR
            version = ModelVersion(
                child.name, child, sequence if sequence.is_dir() else None, manifest
            )
            found.setdefault(version.version, []).append(version)
        ambiguous = {k: [v.name for v in vs] for k, vs in found.items() if len(vs) > 1}
        for model_version, names in ambiguous.items():
            log.error("%s", _ambiguous(model_version, names))
        unique = [vs[0] for vs in found.values() if len(vs) == 1]
        if not unique:
            raise ArtifactError(
                f"{self.root}: holds no usable model version (a subdirectory with "
                f"{MANIFEST_FILE} and a model_version of its own)"
            )
        return sorted(unique, key=lambda v: (v.manifest.created_at, v.name)), ambiguous

    def read_pointer(self, file: str = POINTER_FILE) -> str | None:
        """The champion's ``model_version`` as persisted (the challenger's, with
        ``file=CHALLENGER_FILE``), None if none is (or unversioned)."""
        if not self.versioned:
            return None
        path = self.root / file
        try:
            with path.open("rb") as f:
                data = f.read(MAX_POINTER_BYTES + 1)
        except FileNotFoundError:
            return None
        text = data.decode("utf-8", "replace").strip()
        if not text or len(data) > MAX_POINTER_BYTES:
            raise ArtifactError(f"{path}: not a model version")
        return text

    def write_pointer(self, version: str | None, file: str = POINTER_FILE) -> None:
        """Persist the champion (the challenger, with ``file=CHALLENGER_FILE``; None removes
        that file) atomically: readers see the old pointer or the new one."""
        if not self.versioned:
            raise ArtifactError(
                f"{self.root} is a single artifact, not a directory of versions: "
                "there is nothing to promote"
            )
        try:
            if version is None:
                (self.root / file).unlink(missing_ok=True)
            else:
                write_file(self.root, file, (version + "\n").encode("utf-8"))
            _sync_directory(self.root)
        except OSError as exc:
            raise ChampionFileError(
                f"{self.root / file}: cannot be written ({exc}); the {file} is "
                "unchanged: make the model directory writable"
            ) from exc

    def champion(self) -> ModelVersion:
        """The version to serve at start-up: the persisted champion; with no pointer, the
        newest version, then persisted, so that a version added later is served only once
        it is promoted."""
        pointed = self.read_pointer()
        if pointed is not None:
            version = self.find(pointed)
            if version is None:
                raise ArtifactError(
                    f"{self.root / POINTER_FILE} names {pointed!r}, which is not a version here"
                )
            return version
        newest = self.versions()[-1]
        if self.versioned:
            try:
                self.write_pointer(newest.version)
            except ChampionFileError as exc:
                # A read-only model directory (a mounted volume) still serves: its newest
                # version, which the other processes sharing it pick the same way.
                log.warning(
                    "serving the newest version %s without pinning it: %s", newest.version, exc
                )
        return newest


def _ambiguous(model_version: str, names: list[str]) -> str:
    return (
        f"model version {model_version} left out: it is in {len(names)} directories "
        f"({', '.join(names)}); remove or rebuild all but one"
    )


def _sync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable: without it, a crash right after the promotion can
    bring back the old champion file although the new one was reported written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_for(path: Path, model_version: str | None = None) -> Manifest:
    """The fast-model manifest that ``path`` (RISKSCORE_MODEL_DIR, or a report's
    ``--model-dir``) gives for ``model_version``: a single artifact's own; in a directory
    of versions, that version's, or the champion's when none is named (without writing the
    champion file: reports only read). :class:`ArtifactError` if there is none; a path that
    is neither keeps the single artifact's message (no manifest there)."""
    directory = ModelDirectory(path)
    if not directory.versioned or not path.is_dir():
        return load_manifest(path)
    try:
        versions = directory.versions()
    except ArtifactError:
        return load_manifest(path)  # no version in it: say what a single artifact lacks
    if model_version is None:
        model_version = directory.read_pointer() or versions[-1].version
    version = directory.find(model_version)
    if version is None:
        raise ArtifactError(f"{path}: holds no model version {model_version!r}")
    return version.manifest
