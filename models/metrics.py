"""Quality metrics of the handbook benchmark: ROC AUC, average precision, Card Precision@k.

AUC and AP rank transactions; CP@k ranks *cards* per day, which is what an investigation
team with a fixed daily budget of k card checks experiences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

# The handbook's daily investigation budget.
CARD_PRECISION_K = 100


@dataclass(frozen=True)
class MeanStd:
    """A metric over folds: mean and sample standard deviation (ddof=1, as pandas' ``std``)."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> MeanStd:
        """Summary of per-fold values; a single fold has no spread (std 0).

        >>> MeanStd.of([0.5, 0.7])
        MeanStd(mean=0.6, std=0.14142135623730948)
        """
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0:
            return cls(math.nan, math.nan)
        std = float(np.std(array, ddof=1)) if array.size > 1 else 0.0
        return cls(float(np.mean(array)), std)

    def format(self, digits: int = 3, std_digits: int | None = None) -> str:
        spread = digits if std_digits is None else std_digits
        return f"{self.mean:.{digits}f}±{self.std:.{spread}f}"


def sigmoid(z: npt.ArrayLike) -> np.ndarray:
    """Log-odds to probabilities, without overflow warnings for extreme inputs."""
    # minimum/maximum rather than np.clip: the same values at a third of the per-call cost,
    # which matters on the scoring path (one call per batch, often of one payment).
    bounded = np.minimum(np.maximum(np.asarray(z, dtype=np.float64), -500.0), 500.0)
    return np.asarray(1.0 / (1.0 + np.exp(-bounded)))


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC over transactions; NaN when only one class is present (AUC is undefined)."""
    y = np.asarray(labels)
    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, np.asarray(scores)))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision over transactions; NaN without any fraud (AP is undefined)."""
    y = np.asarray(labels)
    if y.size == 0 or not y.any():
        return math.nan
    return float(average_precision_score(y, np.asarray(scores)))


def card_precision_at_k(
    days: npt.ArrayLike,
    cards: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    k: int = CARD_PRECISION_K,
) -> float:
    """Card Precision@k, the mean over days of :func:`card_precision_at_k_per_day`."""
    per_day = card_precision_at_k_per_day(days, cards, labels, scores, k)
    if not per_day:
        raise ValueError("card precision needs at least one day of transactions")
    return float(np.mean(list(per_day.values())))


def card_precision_at_k_per_day(
    days: npt.ArrayLike,
    cards: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    k: int = CARD_PRECISION_K,
) -> dict[object, float]:
    """Per day (in increasing order): share of fraudulent cards among the day's top k cards.

    A card's score is its highest transaction score that day and it counts as fraudulent
    if any of its transactions that day is. A fraudulent card in a day's top k has been
    caught: its transactions on later days are dropped before ranking. The share is always
    over k, also on a day with fewer than k cards, because k is the daily investigation
    budget (and the handbook divides by k). Ties in score are broken by card id, so the
    result does not depend on row order.

    >>> card_precision_at_k_per_day([1, 1, 2], ["a", "b", "a"], [1, 0, 1], [0.9, 0.1, 0.9], k=1)
    {1: 1.0, 2: 0.0}
    """
    if k <= 0:
        raise ValueError("k must be positive")
    frame = pd.DataFrame(
        {
            "day": np.asarray(days),
            "card": np.asarray(cards),
            "label": np.asarray(labels).astype(np.int8),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
    caught: set[object] = set()
    out: dict[object, float] = {}
    for day, rows in frame.groupby("day", sort=True):
        if caught:
            rows = rows[~rows["card"].isin(caught)]
        per_card = rows.groupby("card", sort=True)[["score", "label"]].max()
        order = np.argsort(-per_card["score"].to_numpy(), kind="stable")[:k]
        top = per_card.iloc[order]
        hits = top.index[top["label"].to_numpy() == 1]
        out[_plain(day)] = len(hits) / k
        caught.update(hits.tolist())
    return out


def _plain(value: object) -> object:
    # Days come back as numpy scalars; plain Python values make the dict easy to read.
    return value.item() if isinstance(value, np.generic) else value
