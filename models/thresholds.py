"""Decision thresholds: what a fraud probability means for the payment.

A score below ``review`` is approved, a score in ``[review, decline)`` goes to a human
reviewer, a score at or above ``decline`` is declined. Both cut points are chosen on the
*validation* predictions (time-held-out payments the trees never trained on), so they
reflect how the model ranks payments it has not seen.

The rule (:func:`choose_thresholds`):

1. **decline** = the lowest score ``t`` such that the validation payments scoring ``>= t``
   are fraud with precision ``>= precision_target`` (default 0.9) *and* include at least
   ``min_decline_frauds`` frauds (default 5). The lowest such ``t`` catches the most fraud
   at that precision, so an automatic decline is wrong at most one time in ten. The fraud
   floor keeps a single lucky top score from setting the threshold on small data.
2. **review** = the lowest score ``r <= decline`` such that the review band
   ``[r, decline)`` holds at most ``review_budget`` (default 2 %) of validation traffic.
   The band is sized by what a review team can work through, not by the model: it is the
   next-riskiest slice of traffic below the automatic declines.

Cut points sit on observed score values and compare with ``>=``, so payments tied at a cut
point all get the same action, exactly as when the precision was measured.

Degenerate cases, each stated in ``rule.fallback``:

* No score meets the precision target with enough fraud (no fraud in validation, too little
  of it, or a model that is not precise enough): ``decline = 1.0``, so nothing is declined
  automatically (only a saturated probability of exactly 1.0 would be) and people decide;
  the review band still takes the riskiest ``review_budget`` of traffic.
* A budget smaller than one payment (tiny validation data), or more tied payments at the top
  of the band than the budget allows: the review band is empty (``review == decline``).
* No validation payments at all: :class:`ValueError`, as there is nothing to choose on.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["approve", "review", "decline"]

RULE_NAME = "precision-target-and-review-budget"
DEFAULT_PRECISION_TARGET = 0.9
DEFAULT_REVIEW_BUDGET = 0.02
DEFAULT_MIN_DECLINE_FRAUDS = 5
# Declining at 1.0 means "never", since a probability reaches it only by saturation.
NO_DECLINE = 1.0


class ThresholdRule(BaseModel):
    """How the thresholds were chosen, so a reader of the manifest can redo it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = RULE_NAME
    description: str
    parameters: dict[str, float]
    fallback: str | None = Field(
        default=None, description="Why a fallback replaced the rule, or None if it did not."
    )


class ValidationOutcome(BaseModel):
    """What the chosen thresholds did on the validation payments they were chosen on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int
    frauds: int
    decline_share: float
    decline_precision: float | None = Field(description="None when nothing is declined.")
    decline_recall: float | None = Field(description="None without fraud in validation.")
    review_share: float
    review_precision: float | None = Field(description="None when the review band is empty.")


class Thresholds(BaseModel):
    """Cut points on the fraud probability and the action each band maps to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    review: float = Field(ge=0.0, le=1.0, description="Lowest score sent to review.")
    decline: float = Field(ge=0.0, le=1.0, description="Lowest score declined.")
    rule: ThresholdRule
    validation: ValidationOutcome | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError(f"review threshold {self.review} is above decline {self.decline}")
        return self

    def action(self, score: float) -> Action:
        """The action for a fraud probability.

        >>> rule = ThresholdRule(description="example", parameters={})
        >>> t = Thresholds(review=0.2, decline=0.8, rule=rule)
        >>> [t.action(s) for s in (0.1, 0.2, 0.5, 0.8, 1.0)]
        ['approve', 'review', 'review', 'decline', 'decline']
        """
        # NaN compares false with everything and would silently approve.
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        return action_between(score, self.review, self.decline)


def action_between(score: float, review: float, decline: float) -> Action:
    """The action for ``score`` with these cut points (each the lowest score of its band)."""
    if score >= decline:
        return "decline"
    if score >= review:
        return "review"
    return "approve"


def choose_thresholds(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    precision_target: float = DEFAULT_PRECISION_TARGET,
    review_budget: float = DEFAULT_REVIEW_BUDGET,
    min_decline_frauds: int = DEFAULT_MIN_DECLINE_FRAUDS,
) -> Thresholds:
    """Thresholds from validation labels (0/1) and fraud probabilities; see the module doc."""
    y, s = _checked(labels, scores)
    if not 0.0 < precision_target <= 1.0:
        raise ValueError(f"precision_target must be in (0, 1], got {precision_target}")
    if not 0.0 <= review_budget <= 1.0:
        raise ValueError(f"review_budget must be in [0, 1], got {review_budget}")
    if min_decline_frauds < 1:
        raise ValueError(f"min_decline_frauds must be at least 1, got {min_decline_frauds}")
    ladder = _Ladder(y, s)
    decline, fallback = _decline_threshold(ladder, precision_target, min_decline_frauds)
    review = _review_threshold(ladder, decline, review_budget)
    rule = ThresholdRule(
        description=(
            "decline: lowest validation score whose payments at or above it have precision "
            ">= precision_target with >= min_decline_frauds frauds; review: lowest score "
            "whose band below decline holds <= review_budget of validation traffic"
        ),
        parameters={
            "precision_target": precision_target,
            "review_budget": review_budget,
            "min_decline_frauds": float(min_decline_frauds),
        },
        fallback=fallback,
    )
    return Thresholds(
        review=review, decline=decline, rule=rule, validation=_outcome(y, s, review, decline)
    )


def outcome(
    labels: ArrayLike, scores: ArrayLike, review: float, decline: float
) -> ValidationOutcome:
    """What thresholds ``review`` and ``decline`` do on labelled scores."""
    y, s = _checked(labels, scores)
    return _outcome(y, s, review, decline)


def _checked(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of equal length")
    if len(y) == 0:
        raise ValueError("no validation predictions to choose thresholds on")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
        raise ValueError("scores must be probabilities in [0, 1]")
    return y.astype(bool), s


class _Ladder:
    """Distinct scores, highest first, with how many payments and frauds score at or above."""

    def __init__(self, y: np.ndarray, s: np.ndarray) -> None:
        order = np.argsort(-s, kind="stable")
        ranked = s[order]
        # The last row of each run of equal scores closes that score's "at or above" set.
        last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
        self.values = ranked[last]
        self.rows = last + 1
        self.frauds = np.cumsum(y[order])[last]
        self.total = len(s)

    def rows_at_or_above(self, threshold: float) -> int:
        reached = self.rows[self.values >= threshold]
        return int(reached[-1]) if len(reached) else 0


def _decline_threshold(
    ladder: _Ladder, precision_target: float, min_frauds: int
) -> tuple[float, str | None]:
    # Division, not frauds >= target * rows: 7/100 rounds to exactly 0.07; 0.07 * 100 does not.
    precise = ladder.frauds / ladder.rows >= precision_target
    eligible = np.flatnonzero(precise & (ladder.frauds >= min_frauds))
    if len(eligible):
        return float(ladder.values[eligible[-1]]), None
    total_frauds = int(ladder.frauds[-1])
    if total_frauds == 0:
        reason = "no fraud in validation"
    elif total_frauds < min_frauds:
        reason = f"only {total_frauds} fraud(s) in validation, fewer than {min_frauds}"
    else:
        reason = f"no score reaches precision {precision_target:g} with {min_frauds} frauds"
    return NO_DECLINE, f"{reason}: nothing is declined automatically (decline = 1.0)"


def _review_threshold(ladder: _Ladder, decline: float, budget: float) -> float:
    declined = ladder.rows_at_or_above(decline)
    below = ladder.values < decline
    band = ladder.rows[below] - declined  # band size if review were each lower score
    fits = np.flatnonzero(band <= math.floor(budget * ladder.total))
    if len(fits) == 0:
        return decline  # even the first score below decline overflows the budget
    return float(ladder.values[below][fits[-1]])


def _outcome(y: np.ndarray, s: np.ndarray, review: float, decline: float) -> ValidationOutcome:
    declined = s >= decline
    reviewed = (s >= review) & ~declined
    frauds = int(y.sum())
    return ValidationOutcome(
        rows=len(y),
        frauds=frauds,
        decline_share=float(declined.mean()),
        decline_precision=_share(y[declined]),
        decline_recall=float(y[declined].sum() / frauds) if frauds else None,
        review_share=float(reviewed.mean()),
        review_precision=_share(y[reviewed]),
    )


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None
