"""The validation days, split by time into three parts that each choose one thing.

- **stop** (the earliest days): teacher and student are early-stopped on them;
- **choice**: the band and the combination rule (and its quantile map) are chosen on them;
- **guard** (the latest days): the guard measures the chosen cascade's lift on them.

No part's choice is judged on days it was made on, so the lift the manifest states is an
estimate on unseen days. The middle part gets the remainder of an uneven split: the band
choice compares the most candidates and needs the most fraud.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NestedSplit:
    """Row indices of each part (each sorted as given)."""

    stop: np.ndarray
    choice: np.ndarray
    guard: np.ndarray


def nested_split(rows: np.ndarray, days: np.ndarray) -> NestedSplit:
    """Split ``rows`` by their ``days`` (one day number per row of ``rows``).

    >>> s = nested_split(np.arange(7), np.array([1, 2, 3, 4, 5, 6, 7]))
    >>> s.stop.tolist(), s.choice.tolist(), s.guard.tolist()
    ([0, 1], [2, 3, 4], [5, 6])
    """
    distinct = np.unique(days)
    if len(distinct) < 3:
        raise ValueError(
            f"the validation rows span {len(distinct)} day(s); early stopping, the band "
            "choice and the guard need one day each at least"
        )
    edge = len(distinct) // 3
    first_choice, first_guard = distinct[edge], distinct[len(distinct) - edge]
    return NestedSplit(
        stop=rows[days < first_choice],
        choice=rows[(days >= first_choice) & (days < first_guard)],
        guard=rows[days >= first_guard],
    )
