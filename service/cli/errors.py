"""Errors the command line reports as one clear line, without a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from features.schema import validation_problems
from service.settings import (
    GROUPS,
    Settings,
    allowed_values,
    settings_models,
    unknown_variables,
)

_WHOLE = "settings"


class UserError(Exception):
    """A failure caused by the command's input (bad file, uncovered dates, bad option)."""


def load_settings(build: Callable[[], Settings] = Settings) -> Settings:
    """The settings from the environment, or one line naming each bad variable and its
    rule; a ``RISKSCORE_*`` variable no setting reads is warned about."""
    warn_unknown_variables()
    try:
        return build()
    except (ValidationError, SettingsError) as exc:
        problems = _problems(exc)
    # A group that fails stops the others from being read: read each on its own, so that
    # every bad variable is named at once.
    groups = settings_models()[1:]
    probes: list[Callable[[], object]] = list(groups)
    # The top level alone: the groups given as they are, unvalidated.
    unvalidated: dict[str, Any] = {
        g: m.model_construct() for g, m in zip(GROUPS, groups, strict=True)
    }
    probes.append(lambda: Settings(**unvalidated))
    for probe in probes:
        try:
            probe()
        except (ValidationError, SettingsError) as exc:
            problems += [p for p in _problems(exc) if p not in problems]
    raise UserError(f"invalid configuration: {'; '.join(problems)}")


def _problems(exc: ValidationError | SettingsError) -> list[str]:
    if isinstance(exc, SettingsError):
        return [str(exc)]
    # A group's error names its own fields: say which variable each one is.
    models: dict[str, type[BaseSettings]] = {m.__name__: m for m in settings_models()}
    model = models.get(exc.title)
    prefix = "" if model is None else str(model.model_config.get("env_prefix", ""))
    named = []
    problems = validation_problems(exc, whole=_WHOLE)
    for (field, message), error in zip(problems, exc.errors(), strict=True):
        if field == _WHOLE:
            named.append(message)  # a rule across variables names them itself
        elif model is None or "." in field or field not in model.model_fields:
            named.append(f"{field}: {message}")
        elif error["type"] == "value_error":
            named.append(f"{prefix}{field.upper()}: {message}")  # our own words: the rule
        else:
            rule = allowed_values(model, field).replace("`", "")
            named.append(f"{prefix}{field.upper()}: {message} (allowed: {rule})")
    return named


def warn_unknown_variables() -> None:
    """A mistyped variable would be ignored without a word: say so at start."""
    for warning in unknown_variables(os.environ):
        print(f"riskscore: warning: {warning}", file=sys.stderr)
