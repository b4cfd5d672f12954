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
from typing import Any

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


def split_days(split: NestedSplit, days: np.ndarray) -> dict[str, dict[str, Any]]:
    """First and last calendar day and row count of each part, for a manifest.

    ``days`` holds one ``datetime64[D]`` per row of the whole history (the split's row
    indices index into it), so a reader sees which days chose what.

    >>> d = np.arange("2024-04-23", "2024-04-30", dtype="datetime64[D]")
    >>> s = nested_split(np.arange(7), d.astype(np.int64))
    >>> split_days(s, d)["guard"]
    {'first': '2024-04-28', 'last': '2024-04-29', 'rows': 2}
    """
    return {
        name: {
            "first": str(days[rows].min()),
            "last": str(days[rows].max()),
            "rows": len(rows),
        }
        for name, rows in (
            ("early_stopping", split.stop),
            ("band_and_rule", split.choice),
            ("guard", split.guard),
        )
    }
