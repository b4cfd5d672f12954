"""Feature values from a window's running statistics: one compiled rule per aggregation.

Both engines call ``feature_value``: the online engine once per feature of a
transaction, the offline engine over whole arrays of window statistics. One
implementation means training and serving cannot drift apart.

Statistics of a window: ``n`` events, amount sum ``s`` and sum of squares ``q``, ``f``
known frauds; ``amount`` and ``local_ms`` are the current payment's; ``gap_ms`` the time
since the entity's previous event (meaningful when n >= 2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from features.definitions import MS_PER_DAY, MS_PER_HOUR, NIGHT_LAST_HOUR, Aggregation

# 1970-01-01 was a Thursday: day number + 3 gives Monday = 0.
EPOCH_WEEKDAY_SHIFT = 3
# A customer whose amounts never vary has a zero spread; a floor relative to the mean
# keeps the z-score finite and meaningful (a 5x amount still scores high).
ZSCORE_FLOOR_SHARE = 0.01
ZSCORE_FLOOR_ABS = 0.01

# Compiled code sees aggregations as small integers, in this order.
AGGREGATION_CODES: dict[Aggregation, int] = {agg: code for code, agg in enumerate(Aggregation)}
_AMOUNT = AGGREGATION_CODES[Aggregation.AMOUNT]
_IS_WEEKEND = AGGREGATION_CODES[Aggregation.IS_WEEKEND]
_IS_NIGHT = AGGREGATION_CODES[Aggregation.IS_NIGHT]
_COUNT = AGGREGATION_CODES[Aggregation.COUNT]
_MEAN_AMOUNT = AGGREGATION_CODES[Aggregation.MEAN_AMOUNT]
_FRAUD_RATE = AGGREGATION_CODES[Aggregation.FRAUD_RATE]
_AMOUNT_TO_PREVIOUS_MEAN = AGGREGATION_CODES[Aggregation.AMOUNT_TO_PREVIOUS_MEAN]
_AMOUNT_ZSCORE = AGGREGATION_CODES[Aggregation.AMOUNT_ZSCORE]
_SECONDS_SINCE_PREVIOUS = AGGREGATION_CODES[Aggregation.SECONDS_SINCE_PREVIOUS]


@njit(cache=True, nogil=True)
def feature_value(
    code: int,
    n: float,
    s: float,
    q: float,
    f: float,
    amount: float,
    local_ms: int,
    gap_ms: int,
    window_ms: int,
) -> float:
    """The value of aggregation ``code`` (transaction-level ones ignore the window)."""
    if code == _AMOUNT:
        return amount
    if code == _IS_WEEKEND:
        return 1.0 if (local_ms // MS_PER_DAY + EPOCH_WEEKDAY_SHIFT) % 7 >= 5 else 0.0
    if code == _IS_NIGHT:
        return 1.0 if (local_ms % MS_PER_DAY) // MS_PER_HOUR <= NIGHT_LAST_HOUR else 0.0
    if code == _COUNT:
        return n
    if code == _MEAN_AMOUNT:
        return s / n if n > 0 else 0.0
    if code == _FRAUD_RATE:
        return f / n if n > 0 else 0.0
    if code == _AMOUNT_TO_PREVIOUS_MEAN:
        prev_sum = s - amount
        return amount * (n - 1) / prev_sum if n > 1 and prev_sum > 0 else 1.0
    if code == _AMOUNT_ZSCORE:
        if n < 3:
            return 0.0
        m = n - 1
        mean = (s - amount) / m
        var = (q - amount * amount) / m - mean * mean
        std = max(math.sqrt(max(var, 0.0)), ZSCORE_FLOOR_SHARE * abs(mean) + ZSCORE_FLOOR_ABS)
        return (amount - mean) / std
    if code == _SECONDS_SINCE_PREVIOUS:
        return (gap_ms if n > 1 else window_ms) / 1000.0
    return math.nan


@njit(cache=True, nogil=True)
def feature_values(
    code: int,
    n: np.ndarray,
    s: np.ndarray,
    q: np.ndarray,
    f: np.ndarray,
    amount: np.ndarray,
    local_ms: np.ndarray,
    gap_ms: np.ndarray,
    window_ms: int,
) -> np.ndarray:
    """``feature_value`` over arrays of statistics (the offline engine)."""
    out = np.empty(len(amount))
    for i in range(len(amount)):
        out[i] = feature_value(
            code, n[i], s[i], q[i], f[i], amount[i], local_ms[i], gap_ms[i], window_ms
        )
    return out
