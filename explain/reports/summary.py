"""A period's summary, aggregated while the decisions stream past: memory is bounded by
the number of features, reason codes and histogram bins, never by the number of decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from explain.audit.store import ReportQueries
from explain.records import DecisionRecord
from explain.reports.query import DecisionFilter, iter_pages
from models.distributions import PSI_ALERT, FeatureDistribution, population_stability_index

SCORE_BINS = 20


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
    """Running totals over a period's decisions; feed pages with :meth:`add`."""

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
    first: datetime | None = None
    last: datetime | None = None
    labelled: int = 0
    labelled_fraud: int = 0
    true_declines: int = 0
    labelled_declines: int = 0
    _drift_counts: dict[str, np.ndarray] = field(default_factory=dict)
    _drift_missing: Counter[str] = field(default_factory=Counter)

    def add(self, records: list[DecisionRecord], labels: dict[str, bool]) -> None:
        """One page of decisions and the latest label of those that have one."""
        for record in records:
            self._add_one(record, labels.get(record.transaction_id))
        if self.reference and records:
            self._bin_features(records)

    def _add_one(self, record: DecisionRecord, is_fraud: bool | None) -> None:
        self.total += 1
        self.by_action[record.action] += 1
        self.by_stage[record.stage] += 1
        self.model_versions[record.model_version] += 1
        if record.fallback:
            self.fallbacks += 1
            self.by_fallback_reason[record.fallback_reason or "unstated"] += 1
        codes = [reason.code for reason in record.reasons]
        self.reasons.update(codes)
        if record.action == "decline":
            self.decline_reasons.update(codes)
        self.score_counts[min(int(record.score * SCORE_BINS), SCORE_BINS - 1)] += 1
        for attribution in record.explanation.attributions:
            name = attribution["feature"]
            self.abs_shap[name] = self.abs_shap.get(name, 0.0) + abs(attribution["contribution"])
        when = record.transaction.timestamp
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)
        if is_fraud is not None:
            self.labelled += 1
            self.labelled_fraud += is_fraud
            if record.action == "decline":
                self.labelled_declines += 1
                self.true_declines += is_fraud

    def _bin_features(self, records: list[DecisionRecord]) -> None:
        assert self.reference is not None
        columns: dict[str, list[float]] = {}
        for record in records:
            for attribution in record.explanation.attributions:
                columns.setdefault(attribution["feature"], []).append(attribution["value"])
        for name, distribution in self.reference.items():
            if name not in columns:
                continue  # a model without this feature decided these
            values = np.asarray(columns[name], dtype=np.float64)
            counts, missing = distribution.bin_counts(values)
            previous = self._drift_counts.get(name)
            self._drift_counts[name] = counts if previous is None else previous + counts
            self._drift_missing[name] += missing

    # -- results --------------------------------------------------------------------------

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.total if self.total else None

    def score_edges(self) -> list[float]:
        return [i / SCORE_BINS for i in range(SCORE_BINS + 1)]

    def mean_abs_shap(self) -> list[tuple[str, float]]:
        """Global importance: mean |SHAP| per feature, largest first."""
        if not self.total:
            return []
        means = ((name, total / self.total) for name, total in self.abs_shap.items())
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
    on_page: Callable[[int], object] | None = None,
) -> PeriodSummary:
    """Stream the selected decisions (and their labels) through a :class:`PeriodSummary`;
    ``on_page`` hears how many decisions each page added (progress)."""
    summary = PeriodSummary(reference=reference)
    for page in iter_pages(store, selection):
        summary.add(page, store.latest_labels_of([r.transaction_id for r in page]))
        if on_page is not None:
            on_page(len(page))
    return summary
