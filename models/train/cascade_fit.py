"""Choose the cascade's band and combination rule on the choice days.

Candidate bands are pairs of fast-probability cut points that escalate at most
``max_escalated_share`` of payments. For each, the choice days are split in two by time; a
logistic regression on (fast log-odds, student logit) and its quantile map onto the fast
scores (:class:`~models.sequence_artifacts.QuantileMap`) are fitted on the in-band rows of
one half and scored on the other, both ways round (cross-fitting: the choice is judged on
rows its rule never saw). The band with the best mean average precision over all rows of
the held-out halves wins (a band within ``AP_TIE`` of the best that escalates less wins
instead: every escalation costs the request path); its rule and map are then refitted on
all its in-band choice rows. Whether the choice is any good is for the guard to say, on
days the choice never saw (``models/train/cascade_guard.py``).

Why a quantile map and not the rule's own probability: ``sigmoid(rule)`` is calibrated on
in-band rows only, so it left the band's interval and interleaved with payments the fast
score decided alone (on the handbook's test weeks the cascade lost 0.005 AP overall while
winning inside the band). Mapped onto the in-band fast scores, the second stage can only
reorder payments inside the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.metrics import average_precision, sigmoid
from models.sequence_artifacts import Band, Combination, QuantileMap

LOW_CUTS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
HIGH_CUTS = (0.2, 0.35, 0.5, 0.7, 0.9, 0.99)
DEFAULT_MAX_ESCALATED = 0.2
# A rule fitted on fewer frauds than this is noise.
MIN_BAND_FRAUD = 5
# Held-out AP differences below this are noise on a day or two of data: prefer the band
# that escalates less.
AP_TIE = 0.002
# Knots of the quantile map: fine enough that the map is smooth, few enough to read in the
# manifest and to search per payment in microseconds.
MAP_KNOTS = 129


@dataclass(frozen=True)
class CascadeFit:
    band: Band
    combination: Combination
    report: dict[str, Any]


def cascade_scores(
    band: Band, combination: Combination, fast_raw: np.ndarray, sequence_logit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Served probabilities of every row and the in-band mask (offline evaluation).

    The same arithmetic as :meth:`Combination.combine`, vectorised.
    """
    fast_p = sigmoid(fast_raw)
    inside = (fast_p >= band.low) & (fast_p < band.high)
    z = (
        combination.intercept
        + combination.fast_weight * fast_raw
        + combination.sequence_weight * sequence_logit
    )
    mapping = combination.mapping
    combined = (
        sigmoid(z) if mapping is None else np.interp(z, mapping.log_odds, mapping.probability)
    )
    return np.where(inside, combined, fast_p), inside


def fit_quantile_map(
    log_odds: np.ndarray, fast_p: np.ndarray, knots: int = MAP_KNOTS
) -> QuantileMap:
    """Quantiles of ``log_odds`` onto the same quantiles of ``fast_p`` (same rows)."""
    if len(log_odds) < 2:
        raise ValueError("a quantile map needs at least two rows")
    q = np.linspace(0.0, 1.0, min(knots, len(log_odds)))
    x = np.quantile(log_odds, q)
    y = np.quantile(fast_p, q)
    # Ties among the inputs: keep one knot per input value (the highest output for it, so
    # the map stays non-decreasing).
    x, last = np.unique(x[::-1], return_index=True)
    y = y[::-1][last]
    if len(x) < 2:  # the rule is constant on these rows: nothing to map from
        x, y = np.array([x[0] - 1.0, x[0] + 1.0]), np.array([y[0], y[0]])
    return QuantileMap(log_odds=x.tolist(), probability=np.maximum.accumulate(y).tolist())


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
            "no band holds enough fraud on the choice days to fit a combination rule; "
            "train on a longer window"
        )
    best = max(c[0] for c in candidates)
    ap, _, band = max((c for c in candidates if c[0] >= best - AP_TIE), key=lambda c: c[1])
    inside = (fast_p >= band.low) & (fast_p < band.high)
    rule = _fit_rule(fast_raw, sequence_logit, labels, inside)
    assert rule is not None  # it fitted on each half, so it fits on both
    share = float(inside.mean())
    return CascadeFit(
        band,
        rule,
        {
            "method": "time-split cross-fitted logistic stacking, quantile-mapped into the band",
            "max_escalated_share": max_escalated_share,
            "escalated_share": share,
            "band_fraud": int(labels[inside].sum()),
            "held_out_average_precision": ap,
            "held_out_fast_average_precision": fast_ap,
            "held_out_ap_gain_per_share": (ap - fast_ap) / share if share else None,
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
    intercept = float(model.intercept_[0])
    weights = model.coef_[0]
    z = intercept + x @ weights
    return Combination(
        intercept=intercept,
        fast_weight=float(weights[0]),
        sequence_weight=float(weights[1]),
        mapping=fit_quantile_map(z, sigmoid(fast_raw[rows])),
    )
