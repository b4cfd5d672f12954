"""What every explanation of one model shares: its features, their wording, the method.

A decision's explanation is per-decision numbers (values, exact SHAP contributions, base
value) plus things that are the same for every decision of a model: the feature names in
model order, the one-line description each reason is worded from, how a reason's text is
put together, and the explainer's name. The latter are an :class:`ExplanationSchema`,
built once per model; the audit store keeps each schema once (keyed by its content) and
each decision refers to it, so a stored reason is its feature's position and its value as
worded, and its text reads back exactly as it was given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from explain.records import Direction

# How a reason reads: "<description>: <value as worded> (<raises|lowers> risk)".
REASON_TEMPLATE = "{about}: {value} ({direction} risk)"


@dataclass(frozen=True)
class ExplanationSchema:
    """Feature names (model order), their descriptions, the reason template, the method."""

    method: str
    feature_names: tuple[str, ...]
    descriptions: tuple[str, ...]
    template: str = REASON_TEMPLATE
    index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    key: str = field(init=False, repr=False, compare=False, hash=False)
    _parts: list[tuple[str, str, str]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.descriptions) != len(self.feature_names):
            raise ValueError("one description per feature")
        object.__setattr__(self, "index", {n: i for i, n in enumerate(self.feature_names)})
        object.__setattr__(self, "key", hashlib.sha256(self.to_json().encode()).hexdigest()[:32])
        object.__setattr__(self, "_parts", [self._split(d) for d in self.descriptions])

    def _split(self, about: str) -> tuple[str, str, str]:
        """The template around its value and direction, for one feature: a reason is then
        three concatenations, not a ``str.format`` (which costs several times more)."""
        value, direction = "\x00value\x00", "\x00direction\x00"
        text = self.template.format(about=about, value=value, direction=direction)
        head, _, rest = text.partition(value)
        middle, _, tail = rest.partition(direction)
        if head + "v" + middle + "d" + tail != self.template.format(
            about=about, value="v", direction="d"
        ):
            raise ValueError(f"reason template {self.template!r} must hold value, then direction")
        return head, middle, tail

    @staticmethod
    def direction(contribution: float) -> Direction:
        return "raises" if contribution > 0 else "lowers"

    def reason_text(self, i: int, value_text: str, direction: Direction) -> str:
        head, middle, tail = self._parts[i]
        return head + value_text + middle + direction + tail

    def to_json(self) -> str:
        """The schema as stored (canonical: equal schemas give equal text and key)."""
        return json.dumps(
            {
                "method": self.method,
                "feature_names": list(self.feature_names),
                "descriptions": list(self.descriptions),
                "template": self.template,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ExplanationSchema:
        data = json.loads(text)
        return cls(
            data["method"],
            tuple(data["feature_names"]),
            tuple(data["descriptions"]),
            data["template"],
        )

    @staticmethod
    @cache
    def for_record(method: str, feature_names: Sequence[str]) -> ExplanationSchema:
        """The schema of a record stored whole (its reasons carry their own texts)."""
        names = tuple(feature_names)
        return ExplanationSchema(method, names, names)
