"""Choose the cascade's band and combination rule on validation rows.

Candidate bands are pairs of fast-probability cut points that escalate at most
``max_escalated_share`` of payments. For each, the validation days are split in two by
time; a logistic regression on (fast log-odds, student logit) is fitted on the in-band rows
of one half and scored on the other, both ways round (cross-fitting: the choice is judged
on rows its rule never saw). The band with the best mean average precision over all rows of
the held-out halves wins; its rule is then refitted on all its in-band validation rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.metrics import average_precision, sigmoid
from models.sequence_artifacts import Band, Combination

LOW_CUTS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
HIGH_CUTS = (0.2, 0.35, 0.5, 0.7, 0.9, 0.99)
DEFAULT_MAX_ESCALATED = 0.2
# A rule fitted on fewer frauds than this is noise.
MIN_BAND_FRAUD = 5


@dataclass(frozen=True)
class CascadeFit:
    band: Band
    combination: Combination
    report: dict[str, Any]


def cascade_scores(
    band: Band, combination: Combination, fast_raw: np.ndarray, sequence_logit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Final probabilities of every row and the in-band mask (offline evaluation)."""
    fast_p = sigmoid(fast_raw)
    inside = (fast_p >= band.low) & (fast_p < band.high)
    z = (
        combination.intercept
        + combination.fast_weight * fast_raw
        + combination.sequence_weight * sequence_logit
    )
    return np.where(inside, sigmoid(z), fast_p), inside


def fit_cascade(
    fast_raw: np.ndarray,
    sequence_logit: np.ndarray,
    labels: np.ndarray,
    epoch_ms: np.ndarray,
    max_escalated_share: float = DEFAULT_MAX_ESCALATED,
) -> CascadeFit:
    """Pick the band and rule (see the module docstring); rows need not be sorted."""
    fast_p = sigmoid(fast_raw)
    halves = epoch_ms <= np.median(epoch_ms)
    candidates = []
    for low in LOW_CUTS:
        for high in HIGH_CUTS:
            if low >= high:
                continue
            band = Band(low=low, high=high)
            inside = (fast_p >= low) & (fast_p < high)
            share = float(inside.mean())
            if share > max_escalated_share or labels[inside].sum() < 2 * MIN_BAND_FRAUD:
                continue
            held_out = []
            for fit_half in (halves, ~halves):
                rule = _fit_rule(fast_raw, sequence_logit, labels, inside & fit_half)
                if rule is None:
                    break
                scores, _ = cascade_scores(band, rule, fast_raw, sequence_logit)
                held_out.append(average_precision(labels[~fit_half], scores[~fit_half]))
            if len(held_out) == 2 and not any(math.isnan(v) for v in held_out):
                candidates.append((float(np.mean(held_out)), -share, band))
    fast_ap = float(np.mean([average_precision(labels[h], fast_p[h]) for h in (halves, ~halves)]))
    if not candidates:
        raise ValueError(
            "no band holds enough validation fraud to fit a combination rule; "
            "train on a longer window"
        )
    ap, _, band = max(candidates, key=lambda c: (c[0], c[1]))
    inside = (fast_p >= band.low) & (fast_p < band.high)
    rule = _fit_rule(fast_raw, sequence_logit, labels, inside)
    assert rule is not None  # it fitted on each half, so it fits on both
    return CascadeFit(
        band,
        rule,
        {
            "method": "time-split cross-fitted logistic stacking",
            "max_escalated_share": max_escalated_share,
            "escalated_share": float(inside.mean()),
            "band_fraud": int(labels[inside].sum()),
            "held_out_average_precision": ap,
            "held_out_fast_average_precision": fast_ap,
            "candidates": len(candidates),
        },
    )


def _fit_rule(
    fast_raw: np.ndarray, sequence_logit: np.ndarray, labels: np.ndarray, rows: np.ndarray
) -> Combination | None:
    y = labels[rows]
    if y.sum() < MIN_BAND_FRAUD or y.sum() == len(y):
        return None
    x = np.column_stack([fast_raw[rows], sequence_logit[rows]])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    return Combination(
        intercept=float(model.intercept_[0]),
        fast_weight=float(model.coef_[0, 0]),
        sequence_weight=float(model.coef_[0, 1]),
    )
