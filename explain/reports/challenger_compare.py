"""The champion against the shadow challenger over one period: pure arithmetic on the
shadowed decisions' light columns (both scores and actions, the label).

What counts where (the page says the same):

* **like with like**: the challenger runs no list or rule, so the champion is compared by
  its *model's* action (its recorded thresholds on its recorded score), not by the action
  it served after lists and rules; the decisions where the two differ are counted;
* **decision rates** (decline rate, the agreement of actions) are over every *shadowed*
  decision, labelled or not: both sides then judge the very same payments;
* **label metrics** (average precision, precision and recall of declines) follow the label
  policy of ``riskscore train --from-store`` (``models/train/label_policy.py``): a labelled
  payment counts with its latest label; an unlabelled one the champion declined is left
  out (it never completed, so no chargeback comes); an unlabelled one within the label
  delay is left out (its label cannot be known yet); any other unlabelled one counts as
  legitimate. Each group is counted.

A period with no shadowed decision, no label, or labels of one class only gives ``None``
for what cannot be computed, with the reason, never a division by zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from explain.audit.challenger_log import Shadowed
from explain.records import Action, DecisionRecord, Explanation
from explain.reports.summary import DeclineQuality
from models.metrics import average_precision
from models.train.label_policy import UNKNOWN, LabelPolicy, label_targets

ACTIONS: tuple[Action, ...] = ("approve", "review", "decline")
DEFAULT_DISAGREEMENTS = 10


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
    """One payment the two sides judged apart; the full record and the challenger's
    explanation are read for the few shown (None: gone from the store since)."""

    shadowed: Shadowed
    record: DecisionRecord | None = None
    challenger_explanation: Explanation | None = None

    @property
    def transaction_id(self) -> str:
        return self.shadowed.transaction_id

    @property
    def flipped(self) -> bool:
        """The two models chose different actions."""
        return self.shadowed.champion_model_action != self.shadowed.challenger_action

    @property
    def difference(self) -> float:
        """Challenger's score minus the champion's (probabilities)."""
        return self.shadowed.challenger_score - self.shadowed.champion_score


@dataclass(frozen=True)
class Comparison:
    """The comparison of one challenger version with the champion over a period."""

    version: str | None
    decisions: int
    shadowed: int
    labelled: int
    """Shadowed decisions whose label has arrived."""
    measured: int
    """Shadowed decisions the label metrics count (labelled, or taken as legitimate)."""
    measured_fraud: int
    declined_unlabelled: int
    within_delay: int
    taken_legitimate: int
    label_delay_days: float
    overridden: int
    """Shadowed decisions whose served action was not the champion model's (a list or rule)."""
    champion_versions: tuple[str, ...]
    champion: SideMetrics
    challenger: SideMetrics
    agreement: dict[tuple[str, str], int]
    disagreements: list[Disagreement]
    ap_note: str | None
    """Why average precision is not given (None when it is)."""
    in_span: int | None = None
    """Decisions from the challenger's first to its last scored decision of the period."""

    @property
    def agreeing(self) -> int:
        return sum(n for (ours, theirs), n in self.agreement.items() if ours == theirs)

    @property
    def agreement_rate(self) -> float | None:
        return self.agreeing / self.shadowed if self.shadowed else None


@dataclass
class _Side:
    declines: int = 0
    measured_declines: int = 0
    true_declines: int = 0
    scores: list[float] = field(default_factory=list)

    def add(
        self, actions: list[Action], scores: np.ndarray, kept: np.ndarray, y: np.ndarray
    ) -> None:
        declined = np.array([a == "decline" for a in actions], dtype=bool)
        self.declines += int(declined.sum())
        self.measured_declines += int((declined & kept).sum())
        self.true_declines += int((declined & kept & (y == 1)).sum())
        self.scores += scores[kept].tolist()


def _ranking(disagreement: Disagreement) -> tuple[bool, float, str]:
    # Action flips first (they change what happens to the payment), then the largest
    # |difference|; ties broken by transaction id, so runs agree.
    return (not disagreement.flipped, -abs(disagreement.difference), disagreement.transaction_id)


class Comparer:
    """Running totals: feed the shadowed decisions in chunks with :meth:`add`, count the
    others with :meth:`add_unshadowed`, then read :meth:`result`. Memory: the measured
    decisions' two scores and labels, and a few times ``top`` light disagreements."""

    def __init__(
        self, version: str | None, policy: LabelPolicy, top: int = DEFAULT_DISAGREEMENTS
    ) -> None:
        self._version = version
        self._policy = policy
        self._top = top
        self._unshadowed = 0
        self._labels: list[int] = []
        self._counts: Counter[str] = Counter()
        self._overridden = 0
        self._champion = _Side()
        self._challenger = _Side()
        self._champion_versions: set[str] = set()
        self._agreement: Counter[tuple[str, str]] = Counter()
        self._disagreements: list[Disagreement] = []

    def add(self, rows: Sequence[Shadowed]) -> None:
        if not rows:
            return
        labels = np.array(
            [UNKNOWN if r.label is None else int(r.label) for r in rows], dtype=np.int8
        )
        served_declines = np.array([r.champion_action == "decline" for r in rows], dtype=bool)
        epoch_ms = np.array([r.event_time_ms for r in rows], dtype=np.int64)
        target = label_targets(epoch_ms, served_declines, labels, self._policy)
        self._counts.update(target.counts)
        self._labels += target.y[target.kept].tolist()
        ours = [r.champion_model_action for r in rows]
        theirs = [r.challenger_action for r in rows]
        self._champion.add(ours, np.array([r.champion_score for r in rows]), target.kept, target.y)
        self._challenger.add(
            theirs, np.array([r.challenger_score for r in rows]), target.kept, target.y
        )
        self._agreement.update(zip(ours, theirs, strict=True))
        for row in rows:
            self._champion_versions.add(row.champion_version)
            self._overridden += row.champion_action != row.champion_model_action
            if self._top > 0 and (
                row.challenger_score != row.champion_score
                or row.challenger_action != row.champion_model_action
            ):
                self._keep(Disagreement(row))

    @property
    def shadowed(self) -> int:
        """Decisions added with a challenger row so far."""
        return sum(self._agreement.values())

    def add_unshadowed(self, count: int) -> None:
        """Decisions of the period the challenger did not score, known only by number."""
        self._unshadowed += count

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
            decisions=shadowed + self._unshadowed,
            shadowed=shadowed,
            labelled=self._counts["labelled"],
            measured=len(self._labels),
            measured_fraud=fraud,
            declined_unlabelled=self._counts["declined_unlabelled_excluded"],
            within_delay=self._counts["unlabelled_within_delay_excluded"],
            taken_legitimate=self._counts["unlabelled_taken_legitimate"],
            label_delay_days=self._policy.delay.total_seconds() / 86_400,
            overridden=self._overridden,
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
            labelled_declines=side.measured_declines,
        )
        ap = average_precision(self._labels, side.scores) if with_ap else None
        return SideMetrics(declines=side.declines, shadowed=shadowed, quality=quality, ap=ap)


def _ap_note(measured: int, fraud: int) -> str | None:
    if measured == 0:
        return "no shadowed decision of this period has a label yet or is past the label delay"
    if fraud == 0:
        return "every measured decision is legitimate: there is no fraud to rank"
    if fraud == measured:
        return "every measured decision is fraud: any ranking scores 1"
    return None


__all__ = [
    "ACTIONS",
    "DEFAULT_DISAGREEMENTS",
    "Comparer",
    "Comparison",
    "Disagreement",
    "SideMetrics",
]
