"""Errors raised by the model runtime.

The service maps each type to one HTTP status and one JSON error body; the models package
itself knows nothing of HTTP, so the types carry no status.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error the model runtime raises on purpose."""


class ArtifactError(ModelError):
    """A model artifact that is missing, malformed, tampered with or inconsistent."""


class ModelNotReady(ModelError):
    """No model is loaded yet, so nothing can be scored."""
