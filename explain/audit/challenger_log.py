"""The shadow challenger's verdicts: a table of their own beside the decisions, the fifth
small contract of the audit store, and its SQL shared by SQLite and PostgreSQL.

A decision row is immutable and says only what the champion decided. What a challenger
model made of the same payment (its score, its action by its own thresholds, its exact
SHAP explanation in the shape a decision's explanation has, its second stage's score if it
ran one) is one ``challenger_scores`` row, keyed by the decision's transaction id and the
challenger's version, written after the decision by the same group-commit writer (in
transactions of their own, never in those the answers wait for) and immutable like it.
Each row carries the decision's event time, so partitions (PostgreSQL) and retention
(both stores) treat it exactly as the decision it belongs to.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from explain.records import Action, DecisionRecord, Explanation, Reason

if TYPE_CHECKING:  # store.py imports this module: its AuditStore has this contract
    from explain.audit.store import Outcome


@dataclass(frozen=True, slots=True)
class ChallengerScore:
    """What a challenger model made of one decided payment (one ``challenger_scores`` row).

    ``reasons_json`` is a JSON list in the shape of a decision's ``reasons`` and
    ``explanation_json`` an object in the shape of its ``explanation`` (method, base
    value, raw score, every feature's value and exact SHAP contribution): the text reads
    back as written (stored compact, ``challenger_codec.py``), :meth:`reasons` and
    :meth:`explanation` parse it.
    """

    transaction_id: str
    model_version: str
    event_time_ms: int  # the decision's: partitions and retention follow it
    score: float
    action: Action
    review_threshold: float  # the challenger's own, from its manifest
    decline_threshold: float
    reasons_json: str
    explanation_json: str
    sequence_score: float | None  # its second stage's probability, when one ran
    scored_at_ms: int

    def reasons(self) -> list[Reason]:
        return [Reason.model_validate(item) for item in _json_list(self.reasons_json)]

    def explanation(self) -> Explanation:
        return Explanation.model_validate_json(self.explanation_json)


class ChallengerRow(NamedTuple):
    """A challenger row as stored (``challenger_codec.COLUMNS``): ``record`` is its
    ``challenger_codec`` record, compact or holding the row's text."""

    transaction_id: str
    model_version: str
    event_time_ms: int
    score: float
    action: Action
    review_threshold: float
    decline_threshold: float
    record: bytes
    sequence_score: float | None
    scored_at_ms: int


def _json_list(text: str) -> list[Any]:
    value = json.loads(text)
    if not isinstance(value, list):
        raise ValueError("challenger reasons are not a JSON list")
    return value


class ChallengerPair(NamedTuple):
    """A decision, what the challenger made of it, and its latest label (None: none yet)."""

    decision: DecisionRecord
    challenger: ChallengerScore
    label: bool | None


@dataclass(frozen=True, slots=True)
class Shadowed:
    """One shadowed decision in the few columns a comparison counts with (no explanation,
    no full record: those are read only for the decisions a report shows)."""

    transaction_id: str
    event_time_ms: int
    champion_version: str
    champion_score: float
    champion_action: Action  # as recorded: after any list or rule
    champion_model_action: Action  # the champion's recorded thresholds on its score
    challenger_score: float
    challenger_action: Action  # its own thresholds on its score (it runs no list or rule)
    label: bool | None  # the latest label, None when none came


@dataclass(frozen=True)
class ShadowCounts:
    """How many decisions a period holds and, per challenger version, how many it scored
    and how many decisions fell within its span (its first to its last scored decision),
    all counted in one statement, so in one snapshot."""

    decisions: int
    scored: dict[str, int]
    in_span: dict[str, int]


class ChallengerLog(ABC):
    """Challenger verdicts, written in groups and read back beside their decisions."""

    @abstractmethod
    def submit_challenger_scores(self, scores: Sequence[ChallengerScore]) -> Future[list[Outcome]]:
        """Queue rows for the group-commit writer; the future gives, per row, True once it
        is durable (a row already stored for the same decision and version stands, and
        this one is dropped silently) or the error that kept it out."""

    @abstractmethod
    def submit_challenger_rows(self, rows: Sequence[ChallengerRow]) -> Future[list[Outcome]]:
        """As :meth:`submit_challenger_scores`, rows already in their stored form (the
        shadow's, compact: ``challenger_codec.py``)."""

    @abstractmethod
    def challenger_scores_of(self, transaction_ids: Sequence[str]) -> list[ChallengerScore]:
        """Every challenger row of these decisions (any version), by event time."""

    @abstractmethod
    def challenger_pairs(
        self, start: datetime, end: datetime, version: str | None = None
    ) -> Iterator[ChallengerPair]:
        """Decisions with ``start`` <= event time < ``end`` that have a challenger row
        (of ``version``, or of any version), each with that row and its latest label, in
        event-time order (ties by transaction id, then version). Read in chunks."""

    @abstractmethod
    def shadowed(self, start: datetime, end: datetime, version: str) -> Iterator[list[Shadowed]]:
        """The decisions with ``start`` <= event time < ``end`` that ``version`` scored, in
        event-time order (ties by transaction id), in chunks read one query each (no read
        snapshot held between chunks)."""

    @abstractmethod
    def shadow_counts(self, start: datetime, end: datetime) -> ShadowCounts:
        """The period's decisions and the challenger versions' rows, counted by the store."""

    @abstractmethod
    def challenger_versions(self, start: datetime, end: datetime) -> list[str]:
        """The challenger versions with rows for decisions in [start, end), sorted."""
