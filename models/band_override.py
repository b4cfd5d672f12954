"""A copy of a sequence artifact with another band: for benchmarks and tests that need
every payment (or a chosen share) to escalate into the second stage.

The manifest holds the checksums of the artifact's other files and is not among them, so
the copy still verifies; its band is what the cascade reads. Never a way to ship a band:
the build chooses and guards those.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.artifact_paths import default_sequence_artifact_dir
from models.artifacts import MANIFEST_FILE


def band_widened_copy(
    target: Path,
    low: float = 0.0,
    high: float = 1.0,
    combination: dict[str, float] | None = None,
) -> Path:
    """The shipped sequence artifact copied to ``target`` with its band set to [low, high)
    (and its combination rule replaced, if one is given); with the defaults every payment
    escalates."""
    shutil.copytree(default_sequence_artifact_dir(), target, dirs_exist_ok=True)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["band"] = {"low": low, "high": high}
    if combination is not None:
        manifest["combination"] = combination
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return target
