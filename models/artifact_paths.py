"""Where shipped model artifacts live inside the installed package."""

from __future__ import annotations

from pathlib import Path

DEFAULT_ARTIFACT = "default_artifact"
DEFAULT_SEQUENCE_ARTIFACT = "default_sequence_artifact"


def default_artifact_dir() -> Path:
    """Directory of the fast model shipped with riskscore (package data of ``models``).

    Located from this file rather than ``importlib.resources.files("models")``: a
    ``tests/models`` directory on ``sys.path`` (pytest's default import mode) can shadow
    the ``models`` package as a namespace package, and the checksum check and LightGBM
    need a real directory anyway (no zipped installs).
    """
    return Path(__file__).resolve().parent / DEFAULT_ARTIFACT


def default_sequence_artifact_dir() -> Path:
    """Directory of the shipped sequence stage (distilled student, ONNX), beside the fast one."""
    return Path(__file__).resolve().parent / DEFAULT_SEQUENCE_ARTIFACT
