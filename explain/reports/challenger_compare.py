"""The champion against the shadow challenger over one period: pure arithmetic on the
decisions, the challenger's scores of the same payments and their labels.

What counts where (the page says the same):

* **decision rates** (decline rate, the agreement of actions) are over every *shadowed*
  decision, labelled or not: both sides then judge the very same payments;
* **label metrics** (average precision, precision and recall of declines) are over the
  shadowed decisions whose label has arrived. A payment the champion declined rarely gets
  a label (it never completed, so no chargeback comes); such payments are left out of the
  label metrics and counted, as ``riskscore train --from-store`` leaves them out of
  training. Other unlabelled payments are left out too: this report has no label delay
  after which silence would mean legitimate.

A period with no shadowed decision, no label, or labels of one class only gives ``None``
for what cannot be computed, with the reason, never a division by zero.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from explain.records import Action, DecisionRecord, Explanation
from explain.reports.summary import DeclineQuality
from models.metrics import average_precision

ACTIONS: tuple[Action, ...] = ("approve", "review", "decline")
DEFAULT_DISAGREEMENTS = 10


class ChallengerScore(Protocol):
    """The challenger's view of one decision, as the audit store keeps it."""

    @property
    def model_version(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def action(self) -> str: ...
    @property
    def explanation(self) -> Explanation: ...


@dataclass(frozen=True)
class SideMetrics:
    """One side (champion or challenger) on the shadowed decisions."""

    declines: int
    shadowed: int
    quality: DeclineQuality
    ap: float | None

    @property
    def decline_rate(self) -> float | None:
        return self.declines / self.shadowed if self.shadowed else None


@dataclass(frozen=True)
class Disagreement:
    """One payment the two sides scored far apart, with both explanations."""

    record: DecisionRecord
    challenger: ChallengerScore
    label: bool | None

    @property
    def difference(self) -> float:
        """Challenger's score minus the champion's (probabilities)."""
        return self.challenger.score - self.record.score


@dataclass(frozen=True)
class Comparison:
    """The comparison of one challenger version with the champion over a period."""

    version: str | None
    decisions: int
    shadowed: int
    labelled: int
    labelled_fraud: int
    declined_unlabelled: int
    champion_versions: tuple[str, ...]
    champion: SideMetrics
    challenger: SideMetrics
    agreement: dict[tuple[str, str], int]
    disagreements: list[Disagreement]
    ap_note: str | None
    """Why average precision is not given (None when it is)."""

    @property
    def agreeing(self) -> int:
        return sum(n for (ours, theirs), n in self.agreement.items() if ours == theirs)

    @property
    def agreement_rate(self) -> float | None:
        return self.agreeing / self.shadowed if self.shadowed else None


@dataclass
class _Side:
    declines: int = 0
    labelled_declines: int = 0
    true_declines: int = 0
    scores: list[float] = field(default_factory=list)

    def add(self, action: str, score: float, label: bool | None) -> None:
        declined = action == "decline"
        self.declines += declined
        if label is None:
            return
        self.scores.append(score)
        self.labelled_declines += declined
        self.true_declines += declined and label


def _ranking(disagreement: Disagreement) -> tuple[float, str]:
    # Largest |difference| first; ties broken by transaction id, so runs agree.
    return (-abs(disagreement.difference), disagreement.record.transaction_id)


class Comparer:
    """Running totals: feed every decision of the period once with :meth:`add` (its
    challenger row or None), then read :meth:`result`. Memory: the labelled decisions'
    two scores, and a few times ``top`` disagreements."""

    def __init__(self, version: str | None, top: int = DEFAULT_DISAGREEMENTS) -> None:
        self._version = version
        self._top = top
        self._decisions = 0
        self._labels: list[bool] = []
        self._declined_unlabelled = 0
        self._champion = _Side()
        self._challenger = _Side()
        self._champion_versions: set[str] = set()
        self._agreement: Counter[tuple[str, str]] = Counter()
        self._disagreements: list[Disagreement] = []

    def add(
        self, record: DecisionRecord, challenger: ChallengerScore | None, label: bool | None
    ) -> None:
        self._decisions += 1
        if challenger is None:
            return
        self._champion_versions.add(record.model_version)
        self._champion.add(record.action, record.score, label)
        self._challenger.add(challenger.action, challenger.score, label)
        self._agreement[(record.action, challenger.action)] += 1
        if label is None:
            self._declined_unlabelled += record.action == "decline"
        else:
            self._labels.append(label)
        if challenger.score != record.score and self._top > 0:
            self._keep(Disagreement(record, challenger, label))

    @property
    def shadowed(self) -> int:
        """Decisions added with a challenger row so far."""
        return sum(self._agreement.values())

    def add_unshadowed(self, count: int) -> None:
        """Decisions of the period the challenger did not score, known only by number."""
        self._decisions += count

    def _keep(self, disagreement: Disagreement) -> None:
        self._disagreements.append(disagreement)
        if len(self._disagreements) > 4 * self._top:
            self._disagreements = sorted(self._disagreements, key=_ranking)[: self._top]

    def result(self) -> Comparison:
        shadowed = self.shadowed
        fraud = sum(self._labels)
        ap_note = _ap_note(len(self._labels), fraud)
        return Comparison(
            version=self._version,
            decisions=self._decisions,
            shadowed=shadowed,
            labelled=len(self._labels),
            labelled_fraud=fraud,
            declined_unlabelled=self._declined_unlabelled,
            champion_versions=tuple(sorted(self._champion_versions)),
            champion=self._metrics(self._champion, shadowed, ap_note is None),
            challenger=self._metrics(self._challenger, shadowed, ap_note is None),
            agreement={
                (ours, theirs): self._agreement[(ours, theirs)]
                for ours in ACTIONS
                for theirs in ACTIONS
            },
            disagreements=sorted(self._disagreements, key=_ranking)[: self._top],
            ap_note=ap_note,
        )

    def _metrics(self, side: _Side, shadowed: int, with_ap: bool) -> SideMetrics:
        quality = DeclineQuality(
            labelled=len(self._labels),
            labelled_fraud=sum(self._labels),
            true_declines=side.true_declines,
            labelled_declines=side.labelled_declines,
        )
        ap = average_precision(self._labels, side.scores) if with_ap else None
        return SideMetrics(declines=side.declines, shadowed=shadowed, quality=quality, ap=ap)


def _ap_note(labelled: int, fraud: int) -> str | None:
    if labelled == 0:
        return "no shadowed decision of this period has a label yet"
    if fraud == 0:
        return "every labelled decision is legitimate: there is no fraud to rank"
    if fraud == labelled:
        return "every labelled decision is fraud: any ranking scores 1"
    return None


__all__ = [
    "ACTIONS",
    "DEFAULT_DISAGREEMENTS",
    "ChallengerScore",
    "Comparer",
    "Comparison",
    "Disagreement",
    "SideMetrics",
]
