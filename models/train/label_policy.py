"""When an unlabelled payment counts as legitimate: the rule ``riskscore train --from-store``
trains by and the challenger report measures by, so both read the store's labels alike.

* declined and unlabelled: a declined payment never completes, so it rarely gets a
  chargeback; its missing label says nothing about it, and it is left out;
* unlabelled and too recent: its label could not be known yet (event time within the
  label delay of ``as_of``), so it is not a negative, and it is left out;
* every other unlabelled payment is taken as legitimate: its chargeback window passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from features.definitions import DEFAULT_FEATURES

UNKNOWN = -1  # label code of a payment without a label known by the cut-off
# The features' own label delay (the terminal-risk windows): what a chargeback takes.
DEFAULT_LABEL_DELAY_DAYS = max(d.delay for d in DEFAULT_FEATURES).days


@dataclass(frozen=True)
class LabelPolicy:
    """When labels are known: at ``as_of``, after ``delay`` for a payment's chargeback."""

    as_of: datetime
    delay: timedelta

    @property
    def as_of_ms(self) -> int:
        return int(self.as_of.timestamp() * 1000)


@dataclass(frozen=True)
class Targets:
    """Targets after the label policy, with the counts the reports state."""

    y: np.ndarray  # int8, meaningful where ``kept``
    kept: np.ndarray  # bool
    counts: dict[str, int]


def label_targets(
    epoch_ms: np.ndarray, declined: np.ndarray, labels: np.ndarray, policy: LabelPolicy
) -> Targets:
    """Apply the label policy (module docstring) to payments given as arrays: event times
    (int64 ms), whether the recorded action was decline, labels (1, 0 or ``UNKNOWN``)."""
    unlabelled = labels == UNKNOWN
    declined_unlabelled = unlabelled & declined
    recent = epoch_ms > policy.as_of_ms - int(policy.delay / timedelta(milliseconds=1))
    too_recent = unlabelled & ~declined & recent
    taken_legitimate = unlabelled & ~declined & ~recent
    y = np.where(unlabelled, 0, labels).astype(np.int8)
    return Targets(
        y=y,
        kept=~(declined_unlabelled | too_recent),
        counts={
            "window_payments": len(epoch_ms),
            "labelled": int((~unlabelled).sum()),
            "unlabelled": int(unlabelled.sum()),
            "declined_unlabelled_excluded": int(declined_unlabelled.sum()),
            "unlabelled_within_delay_excluded": int(too_recent.sum()),
            "unlabelled_taken_legitimate": int(taken_legitimate.sum()),
        },
    )
