"""Errors the command line reports as one clear line, without a traceback."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from features.schema import validation_problems
from service.settings import Settings, settings_models


class UserError(Exception):
    """A failure caused by the command's input (bad file, uncovered dates, bad option)."""


def load_settings(build: Callable[[], Settings] = Settings) -> Settings:
    """The settings from the environment, or one line naming each bad variable."""
    try:
        return build()
    except ValidationError as exc:
        raise UserError(f"invalid configuration: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    # A group's error names its own fields: say which variable each one is.
    models: dict[str, type[BaseSettings]] = {m.__name__: m for m in settings_models()}
    model = models.get(exc.title)
    prefix = "" if model is None else str(model.model_config.get("env_prefix", ""))
    return "; ".join(
        f"{prefix}{field.upper()}: {message}"
        if prefix and "." not in field
        else f"{field}: {message}"
        for field, message in validation_problems(exc, whole="settings")
    )
