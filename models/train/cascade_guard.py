"""The guard: a band ships only when the cascade's lift on held-out days is shown positive.

On the guard days (which neither early stopping nor the band and rule choice saw) the lift is
the cascade's average precision over all rows minus the fast model's. Rows are resampled
with replacement, both scores on the same draw (a paired bootstrap); the band opens when the
lower bound of the one-sided ``confidence`` interval of the lift is above zero. Otherwise
the artifact ships an empty band: the stage stays loaded and is never asked, and the
manifest says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.metrics import average_precision

DEFAULT_DRAWS = 1000
DEFAULT_CONFIDENCE = 0.95
SEED = 16
# Draws scored at once: bounded memory (draws x rows floats) on a day of payments.
CHUNK = 50


@dataclass(frozen=True)
class GuardVerdict:
    """Whether the band opens, and the evidence."""

    open: bool
    reason: str
    lift: float
    lower_bound: float
    fast_ap: float
    cascade_ap: float
    rows: int
    frauds: int
    escalated_share: float
    draws: int
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": "open" if self.open else "closed",
            "reason": self.reason,
            "average_precision_lift": self.lift,
            "lift_lower_bound": self.lower_bound,
            "fast_average_precision": self.fast_ap,
            "cascade_average_precision": self.cascade_ap,
            "rows": self.rows,
            "frauds": self.frauds,
            "escalated_share": self.escalated_share,
            "bootstrap_draws": self.draws,
            "confidence": self.confidence,
        }


def guard(
    labels: np.ndarray,
    fast_p: np.ndarray,
    cascade_p: np.ndarray,
    inside: np.ndarray,
    *,
    draws: int = DEFAULT_DRAWS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = SEED,
) -> GuardVerdict:
    """The verdict on the guard days' rows (see the module docstring)."""
    y = np.asarray(labels).astype(np.float64)
    fast_ap = average_precision(y, fast_p)
    cascade_ap = average_precision(y, cascade_p)
    common: dict[str, Any] = {
        "fast_ap": fast_ap,
        "cascade_ap": cascade_ap,
        "rows": len(y),
        "frauds": int(y.sum()),
        "escalated_share": float(np.mean(inside)) if len(y) else 0.0,
        "draws": draws,
        "confidence": confidence,
    }
    if not np.any(inside) or int(y[inside].sum()) == 0:
        return GuardVerdict(False, "no fraud inside the band on the guard days", 0.0, 0.0, **common)
    lift = cascade_ap - fast_ap
    diffs = bootstrap_ap(y, cascade_p, draws, seed) - bootstrap_ap(y, fast_p, draws, seed)
    lower = float(np.nanquantile(diffs, 1.0 - confidence))
    if lower > 0:
        reason = f"lift {lift:+.4f} AP, {confidence:.0%} lower bound {lower:+.4f} > 0"
    else:
        reason = (
            f"lift {lift:+.4f} AP not shown positive: {confidence:.0%} lower bound "
            f"{lower:+.4f} <= 0"
        )
    return GuardVerdict(lower > 0, reason, lift, lower, **common)


def bootstrap_ap(labels: np.ndarray, scores: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """Average precision on ``draws`` resamples of the rows (same resamples for one seed).

    A resample is a weight per row (how often it was drawn), so the rows are sorted once;
    tied scores count as one threshold, as in scikit-learn's ``average_precision_score``.
    """
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n = len(y)
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of tied scores
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for start in range(0, draws, CHUNK):
        k = min(CHUNK, draws - start)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)])
        weights = weights[:, order].astype(np.float64)
        tp = np.cumsum(weights * y, axis=1)[:, last]
        seen = np.cumsum(weights, axis=1)[:, last]
        total = tp[:, -1:]
        recall_step = np.diff(tp, axis=1, prepend=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(seen > 0, tp / seen, 0.0)
            out[start : start + k] = np.where(
                total[:, 0] > 0, np.sum(precision * recall_step, axis=1) / total[:, 0], np.nan
            )
    return out
