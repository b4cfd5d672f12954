"""Reason codes: the features that moved a score most, in words a reviewer can read.

A reason's code is its feature's name, which is stable across model versions (a model
with a renamed input is a different model); its text comes from the feature's one-line
description in the feature definitions, with the value formatted for its kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec
import numpy as np

from explain.decision import Reasons, encode_json
from explain.records import Direction, Explanation, Reason
from explain.schema import ExplanationSchema
from features.definitions import DEFAULT_FEATURES, Aggregation, FeatureDefinition, by_name

DEFAULT_REASON_COUNT = 3


def format_value(definition: FeatureDefinition | None, value: float) -> str:
    """The value as a reviewer expects to read it for this kind of feature.

    >>> from features.definitions import by_name
    >>> d = by_name()
    >>> format_value(d["TX_DURING_NIGHT"], 1.0)
    'yes'
    >>> format_value(d["TERMINAL_ID_RISK_7DAY_WINDOW"], 0.25)
    '25.0%'
    >>> format_value(d["CUSTOMER_ID_SECONDS_SINCE_PREVIOUS"], 5400.0)
    '1.5 h'
    """
    return value_formatter(definition)(value)


def value_formatter(definition: FeatureDefinition | None) -> Callable[[float], str]:
    """The formatting of :func:`format_value` for one feature, chosen once (a reason coder
    formats three values per decision: the choice is not made again for each)."""
    kind = None if definition is None else definition.aggregation
    plain = _FORMATS.get(kind, _amount) if kind is not None else _general

    def formatted(value: float) -> str:
        return plain(value) if math.isfinite(value) else _general(value)

    return formatted


def _general(value: float) -> str:
    return f"{value:g}"


def _amount(value: float) -> str:
    return f"{value:,.2f}"


_FORMATS: dict[Aggregation, Callable[[float], str]] = {
    Aggregation.IS_WEEKEND: lambda v: "yes" if v >= 0.5 else "no",
    Aggregation.IS_NIGHT: lambda v: "yes" if v >= 0.5 else "no",
    Aggregation.COUNT: lambda v: f"{v:.0f}",
    Aggregation.FRAUD_RATE: lambda v: f"{100 * v:.1f}%",
    Aggregation.AMOUNT_TO_PREVIOUS_MEAN: lambda v: f"{v:.2f}x",
    Aggregation.AMOUNT_ZSCORE: lambda v: f"{v:+.1f} sd",
    Aggregation.SECONDS_SINCE_PREVIOUS: lambda v: _duration(v),
}


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


class ReasonBody(msgspec.Struct):
    """One reason in the JSON shape of a decision's ``reasons`` (also the shadow's rows)."""

    code: str
    value: float
    contribution: float
    direction: str
    text: str


class ReasonCoder:
    """Turns rows of values and contributions into reason codes and full explanations."""

    def __init__(
        self,
        feature_names: Sequence[str],
        count: int = DEFAULT_REASON_COUNT,
        definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
        method: str = "",
    ) -> None:
        if count < 0:
            raise ValueError(f"reason count must be >= 0, got {count}")
        known = by_name(definitions)
        self.feature_names = list(feature_names)
        self.count = count
        self._definitions = [known.get(name) for name in self.feature_names]
        self._formatters = [value_formatter(d) for d in self._definitions]
        self.schema = ExplanationSchema(
            method,
            tuple(self.feature_names),
            tuple(
                d.description if d else name
                for d, name in zip(self._definitions, self.feature_names, strict=True)
            ),
        )

    def code(self, values: np.ndarray, contributions: np.ndarray) -> Reasons:
        """The ``count`` largest contributions by size (either sign), largest first, with
        their JSON encoded once. ``contributions`` may carry the base value last."""
        return self.code_many(values.reshape(1, -1), contributions.reshape(1, -1))[0]

    def code_many(self, values: np.ndarray, contributions: np.ndarray) -> list[Reasons]:
        """:meth:`code` for every row of ``(n, k)`` values and ``(n, k[+1])`` contributions."""
        k = len(self.feature_names)
        shap = contributions[:, :k]
        value_rows = values.tolist()
        shap_rows = shap.tolist()
        # Stable order: equal contributions keep model order, so reasons are reproducible.
        # (One row, the common case, is sorted in Python: numpy's per-call set-up would
        # cost more than the 24 numbers; both orders are the same.)
        if len(shap_rows) == 1:
            sizes = list(map(abs, shap_rows[0]))
            # A stable sort, reversed, keeps equal sizes in model order, as argsort does.
            orders = [sorted(range(k), key=sizes.__getitem__, reverse=True)[: self.count]]
        else:
            orders = np.argsort(-np.abs(shap), axis=1, kind="stable")[:, : self.count].tolist()
        schema = self.schema
        formatters = self._formatters
        names = self.feature_names
        out = []
        for order, row_values, row_shap in zip(orders, value_rows, shap_rows, strict=True):
            indices: list[int] = []
            texts: list[str] = []
            bodies: list[ReasonBody] = []
            for i in order:
                contribution = row_shap[i]
                if contribution == 0.0:
                    break  # a feature that did not move the score is no reason
                value = row_values[i]
                direction: Direction = "raises" if contribution > 0 else "lowers"
                value_text = formatters[i](value)
                indices.append(i)
                texts.append(value_text)
                bodies.append(
                    ReasonBody(
                        names[i],
                        value,
                        contribution,
                        direction,
                        schema.reason_text(i, value_text, direction),
                    )
                )
            out.append(Reasons(tuple(indices), tuple(texts), encode_json(bodies)))
        return out

    def reasons(self, values: np.ndarray, contributions: np.ndarray) -> list[Reason]:
        """As :meth:`code`, as :class:`Reason` models."""
        return [
            Reason.model_validate(r)
            for r in msgspec.json.decode(self.code(values, contributions).json)
        ]

    def explanation(
        self, method: str, values: np.ndarray, contributions: np.ndarray, raw_score: float
    ) -> Explanation:
        """Every feature's value and contribution; ``contributions[-1]`` is the base value.

        ``raw_score`` is the model's own prediction, not the sum of the contributions, so
        the record shows any disagreement instead of hiding it.
        """
        k = len(self.feature_names)
        return Explanation.model_validate(
            {
                "method": method,
                "base_value": float(contributions[k]),
                "raw_score": raw_score,
                "attributions": [
                    {"feature": name, "value": value, "contribution": c}
                    for name, value, c in zip(
                        self.feature_names, values.tolist(), contributions[:k].tolist(), strict=True
                    )
                ],
            }
        )
