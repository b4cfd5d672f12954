"""The scorer as the streaming loop's callables: the Kafka thread hands batches to the one
``Scorer`` on the event loop and waits for durable decisions.

The scorer stays single-threaded (its feature state is touched only on the event loop);
the consumer thread only waits. Errors that are the record's (a reused transaction id,
a label for an unknown transaction) become dead letters; the rest are retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from explain.audit.store import AuditStoreError
from explain.decision import response_json
from features.schema import Transaction
from models.errors import ModelNotReady
from service.errors import (
    AuditUnavailable,
    FeatureStateDown,
    IdempotencyConflict,
    NotFound,
    NotReady,
    UnsupportedCurrency,
)
from service.scorer import Scorer
from streaming.codec import RecordError
from streaming.processor import EncodedDecision, RetryableError

# Long enough for any batch; a stuck loop fails the batch, which is then retried.
CALL_TIMEOUT_S = 60.0
T = TypeVar("T")


class ScorerBridge:
    def __init__(self, scorer: Scorer, loop: asyncio.AbstractEventLoop) -> None:
        self._scorer = scorer
        self._loop = loop

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the scorer's loop and wait; failures that are not the records' fault
        (store, feature state, model, a stuck loop, a scorer still warming up) become
        :class:`RetryableError`."""
        if not self._scorer.warmed:
            coroutine.close()
            raise RetryableError("the scorer is still rebuilding its feature state")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(CALL_TIMEOUT_S)
        except (
            AuditUnavailable,
            AuditStoreError,
            FeatureStateDown,
            NotReady,
            ModelNotReady,
            TimeoutError,
        ) as exc:
            future.cancel()
            raise RetryableError(str(exc) or type(exc).__name__) from exc

    def score(self, txs: list[Transaction]) -> list[EncodedDecision | RecordError]:
        outcomes = self._call(self._scorer.score_batch(txs))
        out: list[EncodedDecision | RecordError] = []
        for outcome in outcomes:
            if isinstance(outcome, IdempotencyConflict | UnsupportedCurrency):
                out.append(RecordError(outcome.type, outcome.message))
            else:
                # The message is the /score answer, from the one encoder of that view.
                out.append(EncodedDecision(outcome.transaction_id, response_json(outcome.decision)))
        return out

    def labels(self, labels: list[tuple[str, bool, datetime | None]]) -> list[RecordError | None]:
        outcomes = self._call(self._scorer.record_labels(labels))
        if any(isinstance(o, AuditUnavailable) for o in outcomes):
            raise RetryableError("the audit store could not record labels")
        return [
            RecordError(o.type, o.message) if isinstance(o, NotFound) else None for o in outcomes
        ]
