"""Errors the command line reports as one clear line, without a traceback."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from features.schema import validation_problems
from service.settings import Settings


class UserError(Exception):
    """A failure caused by the command's input (bad file, uncovered dates, bad option)."""


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``), or one line naming each bad one."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{f}: {m}" for f, m in validation_problems(exc, whole="settings"))
        raise UserError(f"invalid configuration: {problems}") from None
