"""Decisions as columns: what a period report aggregates, without building a full record
per decision (which costs tens of microseconds each: a million of them would not fit a
report's time).

A backend hands these out in chunks (``ReportQueries.decision_columns``); every decision
of a chunk was explained over the same features, so a chunk's values and contributions
are two matrices with one column per feature.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from explain.records import DecisionRecord

# is_fraud of a decision without a label.
UNLABELLED = -1
HOUR_MS = 3_600_000
# Latency histograms: log-spaced bins, 40 per decade from 0.01 ms (each about 6% wide),
# 8 decades. A store that bins in its own query language uses exactly this rule.
LATENCY_BINS_PER_DECADE = 40
LATENCY_LOWEST_MS = 0.01
LATENCY_BINS = 8 * LATENCY_BINS_PER_DECADE


def latency_bins(latency_ms: np.ndarray) -> np.ndarray:
    """The histogram bin of each latency (below the lowest: the first; above: the last)."""
    safe = np.maximum(latency_ms, LATENCY_LOWEST_MS)
    index = np.floor(np.log10(safe / LATENCY_LOWEST_MS) * LATENCY_BINS_PER_DECADE)
    return np.clip(index.astype(np.int64), 0, LATENCY_BINS - 1)


@dataclass(frozen=True)
class PeriodAggregates:
    """A period's decisions counted by a store in bulk (GROUP BYs), for the period report:
    everything but the per-feature numbers, which come from a sample of the records."""

    # (hour since the epoch, action, stage, fallback 0/1, fallback reason, model version, n)
    groups: list[tuple[int, str, str, int, str | None, str, int]]
    # (hour, action, latest is_fraud 0/1, n) of the labelled decisions
    labels: list[tuple[int, str, int, int]]
    # (hour, latency bin, n)
    latency: list[tuple[int, int, int]]
    # (score bin of score_bins, n)
    scores: list[tuple[int, int]]
    # (reason code, action, n): how often each code was among the top reasons
    reasons: list[tuple[str, str, int]]
    first_ms: int | None
    last_ms: int | None


@dataclass(frozen=True)
class DecisionColumns:
    """One chunk of decisions, one entry per decision in every field."""

    feature_names: tuple[str, ...]
    event_time_ms: np.ndarray  # int64
    action: list[str]
    stage: list[str]
    model_version: list[str]
    fallback: np.ndarray  # bool
    fallback_reason: list[str | None]
    score: np.ndarray  # float64
    latency_ms: np.ndarray  # float64, receipt to decision
    reasons: list[list[int]]  # positions (in feature_names) of each decision's reasons
    values: np.ndarray  # (decisions, features) float64
    contributions: np.ndarray  # (decisions, features) float64
    is_fraud: np.ndarray  # int8: the latest label, or UNLABELLED

    def __len__(self) -> int:
        return len(self.action)


def columns_of(
    records: Sequence[DecisionRecord], labels: dict[str, bool]
) -> Iterator[DecisionColumns]:
    """Full records as chunks of columns, one chunk per set of features (a period can span
    model versions with different inputs)."""
    groups: dict[tuple[str, ...], list[DecisionRecord]] = {}
    for record in records:
        names = tuple(a["feature"] for a in record.explanation.attributions)
        groups.setdefault(names, []).append(record)
    for names, group in groups.items():
        index = {name: i for i, name in enumerate(names)}
        yield DecisionColumns(
            feature_names=names,
            event_time_ms=np.array([r.transaction.epoch_ms for r in group], dtype=np.int64),
            action=[r.action for r in group],
            stage=[r.stage for r in group],
            model_version=[r.model_version for r in group],
            fallback=np.array([r.fallback for r in group], dtype=bool),
            fallback_reason=[r.fallback_reason for r in group],
            score=np.array([r.score for r in group], dtype=np.float64),
            latency_ms=np.array([r.latency_ms for r in group], dtype=np.float64),
            # The model's reasons (a list's or rule's LIST_/RULE_ code is no feature), as
            # the stored reason positions of the SQL path hold them.
            reasons=[[index[c.code] for c in r.reasons if c.code in index] for r in group],
            values=np.array(
                [[a["value"] for a in r.explanation.attributions] for r in group],
                dtype=np.float64,
            ).reshape(len(group), len(names)),
            contributions=np.array(
                [[a["contribution"] for a in r.explanation.attributions] for r in group],
                dtype=np.float64,
            ).reshape(len(group), len(names)),
            is_fraud=np.array(
                [
                    UNLABELLED if (f := labels.get(r.transaction_id)) is None else int(f)
                    for r in group
                ],
                dtype=np.int8,
            ),
        )
