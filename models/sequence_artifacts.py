"""The sequence stage's artifact: the distilled student as ONNX, and how the cascade uses it.

A directory with ``student.onnx`` (dynamic batch: batches and attributions),
``student_b1.onnx`` (batch fixed at 1: single payments, measurably faster) and
``manifest.json``. The manifest records what the model reads (sequence length, columns),
how it was trained (teacher and student shapes and metrics, distillation settings), how
the cascade uses it (the ambiguous band and the combination rule, fitted on validation
data against one fast model, whose version it names) and what it costs (latency). Files
are checked against their SHA-256 before anything is parsed, as for the fast model.
"""

from __future__ import annotations

import bisect
import itertools
import math
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from features.sequence import DEFAULT_MAX_AGE_MS
from models.artifacts import FileName, Sha256

KIND: Final = "sequence-onnx"
STUDENT_FILE = "student.onnx"
STUDENT_SINGLE_FILE = "student_b1.onnx"


class Band(BaseModel):
    """Fast-path probabilities for which the sequence stage is wanted: low <= p < high.

    ``low == high`` is the empty band: the stage stays loaded and is never asked (what the
    artifact builder ships when the stage's lift on held-out days is not shown to be positive).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(ge=0.0, le=1.0)
    high: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.low > self.high:
            raise ValueError(f"band low {self.low} must not be above high {self.high}")
        return self

    @classmethod
    def closed(cls) -> Band:
        return cls(low=0.0, high=0.0)

    @property
    def empty(self) -> bool:
        return self.low >= self.high

    def contains(self, probability: float) -> bool:
        return self.low <= probability < self.high


class QuantileMap(BaseModel):
    """A non-decreasing piecewise-linear map from the rule's log-odds onto fast probabilities.

    Fitted on the in-band rows the rule was fitted on: the q-quantile of the rule's log-odds
    goes to the q-quantile of the fast probabilities of the same rows. Every served score of
    an in-band payment therefore stays inside the band's interval (it cannot leapfrog a
    payment the fast score decided alone), and in-band traffic keeps the fast score's
    distribution, so the fast model's review and decline thresholds keep the traffic shares
    they were chosen for. Outside the knots the map is flat (the first or last output).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_odds: list[float] = Field(min_length=2, description="Strictly increasing inputs.")
    probability: list[float] = Field(min_length=2, description="Non-decreasing outputs.")

    @model_validator(mode="after")
    def _monotone(self) -> QuantileMap:
        x, y = self.log_odds, self.probability
        if len(x) != len(y):
            raise ValueError("log_odds and probability must have the same length")
        if any(b <= a for a, b in itertools.pairwise(x)):
            raise ValueError("log_odds must be strictly increasing")
        if any(b < a for a, b in itertools.pairwise(y)):
            raise ValueError("probability must be non-decreasing")
        if not all(0.0 <= p <= 1.0 for p in y):
            raise ValueError("probability must lie in [0, 1]")
        return self

    def apply(self, z: float) -> float:
        x, y = self.log_odds, self.probability
        if z <= x[0]:
            return y[0]
        if z >= x[-1]:
            return y[-1]
        i = bisect.bisect_right(x, z)
        t = (z - x[i - 1]) / (x[i] - x[i - 1])
        return y[i - 1] + t * (y[i] - y[i - 1])


class Combination(BaseModel):
    """Logistic stacking inside the band, fitted on validation rows in the band:

    ``z = intercept + fast_weight * fast_raw + sequence_weight * sequence_logit``
    where ``fast_raw`` is the fast model's log-odds and ``sequence_logit`` the student's;
    the served probability is ``mapping(z)`` (see :class:`QuantileMap`), or ``sigmoid(z)``
    for an artifact built before the map existed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: float
    fast_weight: float
    sequence_weight: float
    mapping: QuantileMap | None = None

    def log_odds(self, fast_raw: float, sequence_logit: float) -> float:
        return self.intercept + self.fast_weight * fast_raw + self.sequence_weight * sequence_logit

    def combine(self, fast_raw: float, sequence_logit: float) -> float:
        z = self.log_odds(fast_raw, sequence_logit)
        if self.mapping is not None:
            return self.mapping.apply(z)
        # Written to stay finite for any z: exp of a large positive argument overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def describe(self) -> str:
        z = (
            f"{self.intercept:+.4f} {self.fast_weight:+.4f}*fast_raw "
            f"{self.sequence_weight:+.4f}*sequence_logit"
        )
        if self.mapping is None:
            return f"sigmoid({z})"
        return f"quantile_map({z}; {len(self.mapping.log_odds)} knots onto in-band fast scores)"


class SequenceManifest(BaseModel):
    """Everything needed to trust, load and use one sequence-stage artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest_version: Literal[1] = 1
    kind: Literal["sequence-onnx"] = KIND
    model_version: str = Field(min_length=1, description="seq-YYYYMMDD-<student sha prefix>")
    created_at: AwareDatetime
    fast_model_version: str = Field(
        description="The fast model the band and combination were fitted against."
    )
    length: int = Field(ge=1, description="Transactions per sequence, the current one last.")
    max_age_ms: int = Field(
        default=DEFAULT_MAX_AGE_MS, ge=1, description="Older payments are left out of sequences."
    )
    feature_names: list[str] = Field(min_length=1, description="Feature vector per position.")
    column_names: list[str] = Field(description="All columns per position, in input order.")
    band: Band
    combination: Combination
    teacher: dict[str, Any] = Field(description="Shape, training rows and validation metrics.")
    student: dict[str, Any] = Field(
        description="Shape, distillation settings, validation metrics, ONNX-vs-torch difference."
    )
    latency_ms: dict[str, float] = Field(description="Measured at build time, one thread.")
    validation: dict[str, Any] = Field(description="Band choice and cascade metrics.")
    files: dict[FileName, Sha256]

    @model_validator(mode="after")
    def _consistent(self) -> SequenceManifest:
        for name in (STUDENT_FILE, STUDENT_SINGLE_FILE):
            if name not in self.files:
                raise ValueError(f"files must list {name}")
        if len(self.column_names) != len(self.feature_names) + 2:
            raise ValueError("column_names must be the features plus gap and padding flag")
        return self


def sequence_version(created_at: datetime, student_sha256: str) -> str:
    return f"seq-{created_at.astimezone(UTC):%Y%m%d}-{student_sha256[:8]}"
