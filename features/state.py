"""The feature-state seam: where each entity's windows live (in the spirit of Feast's
``OnlineStore``).

Two backends implement it with the same feature definitions and the same values:

* ``memory`` (:class:`features.online.OnlineFeatureEngine`): in the process, compiled
  kernels; rebuilt from the audit store at start-up. The default.
* ``redis`` (:class:`features.redis_state.RedisFeatureState`): Redis ≥ 7 or Valkey, each
  entity updated atomically by a Redis Function; it outlives the process and is shared by
  every process pointed at it, so nothing is replayed at start-up.

The scorer sees only this contract: apply payments in order and get their features back,
feed a label, ask whether an id was applied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np

from features.plan import FeaturePlan
from features.schema import Transaction


class LabelOutcome(StrEnum):
    APPLIED = "applied"  # the label changed feature state
    UNCHANGED = "unchanged"  # the same label was already recorded
    UNKNOWN = "unknown"  # no such transaction in the state (never seen, or too old to matter)


class DuplicateTransaction(ValueError):
    """The transaction id was already applied to the state.

    Detected while the id can still be labelled (the longest labelled window plus its
    delay); exactly-once over any span is the audit store's job, keyed by id.
    """


class FeatureStateUnavailable(RuntimeError):
    """The feature state could not be reached or answered wrongly (an external backend):
    nothing of the payment was decided; the caller may retry."""


class Event(Protocol):
    """What the state reads of a transaction (a validated one, or one replayed)."""

    @property
    def transaction_id(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def epoch_ms(self) -> int: ...
    @property
    def local_epoch_ms(self) -> int: ...
    @property
    def amount(self) -> float: ...


@dataclass(frozen=True)
class BatchUpdate:
    """Feature vectors of a batch (rows in input order), the rows refused as duplicates
    (their rows hold NaN) and the rows replayed: ids already applied with the same payload,
    whose rows hold the features they were first given (the state did not change)."""

    values: np.ndarray
    refused: list[int]
    replayed: list[int] = field(default_factory=list)


class FeatureState(ABC):
    """Online feature state: per-entity windows updated one payment at a time."""

    plan: FeaturePlan
    feature_names: tuple[str, ...]

    #: Whether the state outlives the process (then nothing is replayed at start-up).
    persistent: bool = False

    @abstractmethod
    def update_many(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        local_epoch_ms: Sequence[int],
        amounts: Sequence[float],
        digests: Sequence[str] | None = None,
    ) -> BatchUpdate:
        """Apply transactions in the order given (each sees the ones before it) and return
        their features; an id already applied changes nothing.

        ``digests`` (hex SHA-256 of each payload) let a state that outlives the process
        replay an id: one applied with the same digest comes back ``replayed``, with the
        features it was first given, so a payment applied by a process that died before
        recording its decision can still be decided, exactly. Any other repeat is refused
        (the ``memory`` state always refuses: it dies with the process, and starts again
        from the recorded decisions).
        """

    @abstractmethod
    def record_label(self, transaction_id: Hashable, is_fraud: bool) -> LabelOutcome:
        """Feed a fraud label back; it reaches only windows delayed past its transaction."""

    @abstractmethod
    def seen(self, transaction_id: Hashable) -> bool:
        """Whether this id is known, without a round trip (False when the state cannot
        tell cheaply: then its update refuses a duplicate instead)."""

    @property
    @abstractmethod
    def dedupe_floor_ms(self) -> int:
        """Event time after which the state never forgets an applied id."""

    def update_all(
        self, events: Sequence[Event], digests: Sequence[str] | None = None
    ) -> BatchUpdate:
        """:meth:`update_many` for transactions, or anything carrying the same fields."""
        return self.update_many(
            [e.transaction_id for e in events],
            [e.customer_id for e in events],
            [e.terminal_id for e in events],
            [e.epoch_ms for e in events],
            [e.local_epoch_ms for e in events],
            [e.amount for e in events],
            digests,
        )

    def update(self, tx: Transaction, out: np.ndarray | None = None) -> np.ndarray:
        """Apply a validated transaction and return its feature vector (in ``out`` if given)."""
        return self.update_raw(
            tx.transaction_id,
            tx.customer_id,
            tx.terminal_id,
            tx.epoch_ms,
            tx.local_epoch_ms,
            tx.amount,
            out=out,
        )

    def update_raw(
        self,
        transaction_id: Hashable,
        customer_id: Hashable,
        terminal_id: Hashable,
        epoch_ms: int,
        local_epoch_ms: int,
        amount: float,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """As ``update`` for already-checked fields; fills ``out`` when given (replays)."""
        update = self.update_many(
            [transaction_id], [customer_id], [terminal_id], [epoch_ms], [local_epoch_ms], [amount]
        )
        if update.refused:
            raise DuplicateTransaction(f"transaction {transaction_id!r} was already applied")
        if out is None:
            return update.values[0]
        out[:] = update.values[0]
        return out

    def problem(self) -> str | None:
        """What keeps the state from serving, or None (blocking: a network backend asks)."""
        return None

    def close(self) -> None:  # noqa: B027 (optional: only external backends hold anything)
        """Release connections (nothing for the in-process state)."""
