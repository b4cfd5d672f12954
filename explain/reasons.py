"""Reason codes: the features that moved a score most, in words a reviewer can read.

A reason's code is its feature's name, which is stable across model versions (a model
with a renamed input is a different model); its text comes from the feature's one-line
description in the feature definitions, with the value formatted for its kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from explain.records import Direction, Explanation, Reason
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
    if definition is None or not np.isfinite(value):
        return f"{value:g}"
    aggregation = definition.aggregation
    if aggregation in (Aggregation.IS_WEEKEND, Aggregation.IS_NIGHT):
        return "yes" if value >= 0.5 else "no"
    if aggregation is Aggregation.COUNT:
        return f"{value:.0f}"
    if aggregation is Aggregation.FRAUD_RATE:
        return f"{100 * value:.1f}%"
    if aggregation is Aggregation.AMOUNT_TO_PREVIOUS_MEAN:
        return f"{value:.2f}x"
    if aggregation is Aggregation.AMOUNT_ZSCORE:
        return f"{value:+.1f} sd"
    if aggregation is Aggregation.SECONDS_SINCE_PREVIOUS:
        return _duration(value)
    return f"{value:,.2f}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


class ReasonCoder:
    """Turns one row's values and contributions into reason codes and a full explanation."""

    def __init__(
        self,
        feature_names: Sequence[str],
        count: int = DEFAULT_REASON_COUNT,
        definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
    ) -> None:
        if count < 0:
            raise ValueError(f"reason count must be >= 0, got {count}")
        known = by_name(definitions)
        self.feature_names = list(feature_names)
        self.count = count
        self._definitions = [known.get(name) for name in self.feature_names]

    # The *_data methods give plain dicts: a scorer validates a whole decision record in
    # one pydantic call, several times faster than building (or even model_construct-ing)
    # some thirty nested models one by one.

    def reasons(self, values: np.ndarray, contributions: np.ndarray) -> list[Reason]:
        """The ``count`` largest contributions by size (either sign), largest first.

        ``contributions`` may carry the base value as a last element; it is ignored.
        """
        return [Reason.model_validate(r) for r in self.reason_data(values, contributions)]

    def reason_data(self, values: np.ndarray, contributions: np.ndarray) -> list[dict[str, Any]]:
        """As :meth:`reasons`, as dicts of :class:`Reason` fields."""
        k = len(self.feature_names)
        shap = contributions[:k]
        # Stable sort: equal contributions keep model order, so reasons are reproducible.
        order = np.argsort(-np.abs(shap), kind="stable")[: self.count]
        out = []
        for i in order.tolist():
            contribution = float(shap[i])
            if contribution == 0.0:
                break  # a feature that did not move the score is no reason
            out.append(self._reason(i, float(values[i]), contribution))
        return out

    def _reason(self, i: int, value: float, contribution: float) -> dict[str, Any]:
        definition = self._definitions[i]
        direction: Direction = "raises" if contribution > 0 else "lowers"
        about = definition.description if definition else self.feature_names[i]
        return {
            "code": self.feature_names[i],
            "value": value,
            "contribution": contribution,
            "direction": direction,
            "text": f"{about}: {format_value(definition, value)} ({direction} risk)",
        }

    def explanation(
        self, method: str, values: np.ndarray, contributions: np.ndarray, raw_score: float
    ) -> Explanation:
        """Every feature's value and contribution; ``contributions[-1]`` is the base value.

        ``raw_score`` is the model's own prediction, not the sum of the contributions, so
        the record shows any disagreement instead of hiding it.
        """
        return Explanation.model_validate(
            self.explanation_data(method, values, contributions, raw_score)
        )

    def explanation_data(
        self, method: str, values: np.ndarray, contributions: np.ndarray, raw_score: float
    ) -> dict[str, Any]:
        """As :meth:`explanation`, as a dict of :class:`Explanation` fields."""
        k = len(self.feature_names)
        shap = contributions[:k].tolist()
        return {
            "method": method,
            "base_value": float(contributions[k]),
            "raw_score": raw_score,
            "attributions": [
                {"feature": name, "value": value, "contribution": c}
                for name, value, c in zip(self.feature_names, values.tolist(), shap, strict=True)
            ],
        }
