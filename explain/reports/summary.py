"""A period's summary, aggregated while the decisions stream past: memory is bounded by
the number of features, reason codes and histogram bins, never by the number of decisions.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from explain.audit.columns import DecisionColumns, PeriodAggregates
from explain.audit.store import ReportQueries
from explain.reports.query import STREAM_PAGE, DecisionFilter
from explain.reports.trends import Trends, instant
from models.distributions import PSI_ALERT, FeatureDistribution, population_stability_index

SCORE_BINS = 20
# Importance and drift need every feature of every decision read (each record decoded):
# past this many decisions they come from a systematic sample (one row in k). A PSI over
# ten bins from 20,000 values moves by about bins / n = 0.0005 from sampling, far below
# the 0.25 that flags drift; reading them costs about 2 s on a shared two-core machine.
FEATURE_SAMPLE = 20_000


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float | None
    drifted: bool


@dataclass(frozen=True)
class DeclineQuality:
    """Declines against the labels that have arrived (unlabelled decisions are left out)."""

    labelled: int
    labelled_fraud: int
    true_declines: int  # declined and labelled fraud
    labelled_declines: int

    @property
    def precision(self) -> float | None:
        return self.true_declines / self.labelled_declines if self.labelled_declines else None

    @property
    def recall(self) -> float | None:
        return self.true_declines / self.labelled_fraud if self.labelled_fraud else None


@dataclass
class PeriodSummary:
    """Running totals over a period's decisions; feed chunks of columns with :meth:`add`."""

    reference: dict[str, FeatureDistribution] | None = None
    total: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    by_stage: Counter[str] = field(default_factory=Counter)
    by_fallback_reason: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    decline_reasons: Counter[str] = field(default_factory=Counter)
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    abs_shap: dict[str, float] = field(default_factory=dict)
    model_versions: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    labelled: int = 0
    labelled_fraud: int = 0
    true_declines: int = 0
    labelled_declines: int = 0
    trends: Trends = field(default_factory=Trends)
    # How many decisions importance and drift were computed from (a sample at scale).
    feature_decisions: int = 0
    _drift_counts: dict[str, np.ndarray] = field(default_factory=dict)
    _drift_missing: Counter[str] = field(default_factory=Counter)

    def add(self, chunk: DecisionColumns) -> None:
        """One chunk of decisions, each with its latest label (if any): every count and
        every per-feature number."""
        self.add_counts(chunk)
        self.add_features(chunk)

    def add_counts(self, chunk: DecisionColumns) -> None:
        """Everything but the per-feature numbers (importance, drift)."""
        if not len(chunk):
            return
        names = chunk.feature_names
        self.total += len(chunk)
        self.by_action.update(chunk.action)
        self.by_stage.update(chunk.stage)
        self.model_versions.update(chunk.model_version)
        self.fallbacks += int(chunk.fallback.sum())
        self.by_fallback_reason.update(
            reason or "unstated"
            for reason, fell in zip(chunk.fallback_reason, chunk.fallback.tolist(), strict=True)
            if fell
        )
        declined = np.asarray(chunk.action) == "decline"
        self._count_reasons(self.reasons, names, chunk.reasons)
        self._count_reasons(
            self.decline_reasons,
            names,
            [r for r, d in zip(chunk.reasons, declined.tolist(), strict=True) if d],
        )
        bins = np.minimum((chunk.score * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        self.score_counts += np.bincount(bins, minlength=SCORE_BINS)
        self._span(int(chunk.event_time_ms.min()), int(chunk.event_time_ms.max()))
        labelled = chunk.is_fraud >= 0
        fraud = chunk.is_fraud == 1
        self.labelled += int(labelled.sum())
        self.labelled_fraud += int(fraud.sum())
        self.labelled_declines += int((labelled & declined).sum())
        self.true_declines += int((fraud & declined).sum())
        self.trends.add(chunk)

    def add_features(self, chunk: DecisionColumns) -> None:
        """Importance and drift from these decisions (all of them, or a sample)."""
        if not len(chunk):
            return
        self.feature_decisions += len(chunk)
        totals = np.abs(chunk.contributions).sum(axis=0).tolist()
        for name, total in zip(chunk.feature_names, totals, strict=True):
            self.abs_shap[name] = self.abs_shap.get(name, 0.0) + total
        if self.reference:
            self._bin_features(chunk)

    def add_aggregates(self, aggregates: PeriodAggregates) -> None:
        """A store's bulk counts: everything :meth:`add_counts` gives, without records."""
        for _hour, action, stage, fallback, reason, version, n in aggregates.groups:
            self.total += n
            self.by_action[action] += n
            self.by_stage[stage] += n
            self.model_versions[version] += n
            if fallback:
                self.fallbacks += n
                self.by_fallback_reason[reason or "unstated"] += n
        for _hour, action, is_fraud, n in aggregates.labels:
            self.labelled += n
            self.labelled_fraud += n * is_fraud
            if action == "decline":
                self.labelled_declines += n
                self.true_declines += n * is_fraud
        for score_bin, n in aggregates.scores:
            self.score_counts[score_bin] += n
        for code, action, n in aggregates.reasons:
            self.reasons[code] += n
            if action == "decline":
                self.decline_reasons[code] += n
        if aggregates.first_ms is not None and aggregates.last_ms is not None:
            self._span(aggregates.first_ms, aggregates.last_ms)
        self.trends.add_aggregates(aggregates)

    def _span(self, low: int, high: int) -> None:
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)

    @staticmethod
    def _count_reasons(
        counter: Counter[str], names: tuple[str, ...], reasons: list[list[int]]
    ) -> None:
        flat = np.fromiter(itertools.chain.from_iterable(reasons), np.int64)
        counts = np.bincount(flat, minlength=len(names)).tolist()
        counter.update({name: n for name, n in zip(names, counts, strict=True) if n})

    def _bin_features(self, chunk: DecisionColumns) -> None:
        assert self.reference is not None
        index = {name: i for i, name in enumerate(chunk.feature_names)}
        for name, distribution in self.reference.items():
            if name not in index:
                continue  # a model without this feature decided these
            counts, missing = distribution.bin_counts(chunk.values[:, index[name]])
            previous = self._drift_counts.get(name)
            self._drift_counts[name] = counts if previous is None else previous + counts
            self._drift_missing[name] += missing

    @property
    def first(self) -> datetime | None:
        return None if self.first_ms is None else instant(self.first_ms)

    @property
    def last(self) -> datetime | None:
        return None if self.last_ms is None else instant(self.last_ms)

    # -- results --------------------------------------------------------------------------

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.total if self.total else None

    def score_edges(self) -> list[float]:
        return [i / SCORE_BINS for i in range(SCORE_BINS + 1)]

    def mean_abs_shap(self) -> list[tuple[str, float]]:
        """Global importance: mean |SHAP| per feature, largest first."""
        if not self.feature_decisions:
            return []
        means = ((name, total / self.feature_decisions) for name, total in self.abs_shap.items())
        return sorted(means, key=lambda item: item[1], reverse=True)

    def drift(self) -> list[FeatureDrift]:
        """PSI of each feature against the training window, most drifted first."""
        if not self.reference:
            return []
        rows = []
        for name, distribution in self.reference.items():
            counts = self._drift_counts.get(name)
            psi = (
                None
                if counts is None
                else population_stability_index(
                    distribution, counts.tolist(), self._drift_missing[name]
                )
            )
            rows.append(FeatureDrift(name, psi, psi is not None and psi > PSI_ALERT))
        return sorted(rows, key=lambda row: -1.0 if row.psi is None else row.psi, reverse=True)

    def decline_quality(self) -> DeclineQuality:
        return DeclineQuality(
            labelled=self.labelled,
            labelled_fraud=self.labelled_fraud,
            true_declines=self.true_declines,
            labelled_declines=self.labelled_declines,
        )


def summarize(
    store: ReportQueries,
    selection: DecisionFilter,
    reference: dict[str, FeatureDistribution] | None,
    on_chunk: Callable[[int], object] | None = None,
) -> PeriodSummary:
    """The period's summary. A store that counts in bulk gives every count; importance and
    drift then come from a systematic sample of at most about :data:`FEATURE_SAMPLE`
    decisions (the page says so). Otherwise every decision is read as columns.
    ``on_chunk`` hears how many decisions each chunk read (progress)."""
    summary = PeriodSummary(reference=reference)
    query = selection.query(STREAM_PAGE)
    aggregates = store.period_aggregates(query, SCORE_BINS)
    if aggregates is not None:
        summary.add_aggregates(aggregates)
        every = max(1, math.ceil(summary.total / FEATURE_SAMPLE))
        for chunk in store.decision_columns(query, every=every):
            summary.add_features(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        return summary
    for chunk in store.decision_columns(query):
        summary.add(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return summary
