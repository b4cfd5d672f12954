"""Decisions being made or written: a retry of one of them waits for it instead of scoring.

Idempotency has three parts, from cheapest to last word:

1. this registry: payments decided (or being looked up, or in the second stage) whose
   records are not durable yet — a retry waits on the same future;
2. the feature state's own duplicate check (``OnlineFeatureEngine.seen``): it must know
   every payment it absorbed anyway (labels reach them by id), so a new id is told apart
   from a retry without asking the audit store — no read per request on the event loop;
3. the audit store, asked off the event loop only for ids the feature state has seen (a
   retry of a stored decision) or cannot vouch for (older than its horizon, or a state not
   rebuilt from the store), and whose writer refuses to store an id twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from explain.decision import Decision
from service.errors import IdempotencyConflict


@dataclass(frozen=True, slots=True)
class Scored:
    """A decision, and whether it was decided earlier (an idempotent retry)."""

    decision: Decision
    replayed: bool

    @property
    def transaction_id(self) -> str:
        return self.decision.transaction_id


@dataclass(slots=True)
class Pending:
    """An id being decided: ``decision`` is None while it is looked up or in the second
    stage, then the decision whose record is being written."""

    digest: str
    decision: Decision | None
    future: asyncio.Future[Scored]


def check_same(transaction_id: str, known: str, digest: str) -> None:
    """Refuse a known id carrying another body."""
    if known != digest:
        raise IdempotencyConflict(
            f"transaction {transaction_id!r} was already scored with a different body; "
            "a transaction_id identifies one payment and cannot be reused"
        )


def as_replay(future: asyncio.Future[Scored]) -> asyncio.Future[Scored]:
    """A future giving the same decision as ``future``, marked as a replay."""
    replay: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()

    def copy(done: asyncio.Future[Scored]) -> None:
        if replay.done():
            return
        if done.cancelled():
            replay.cancel()
            return
        error = done.exception()
        if error is not None:
            replay.set_exception(error)
            replay.exception()  # retrieved: nobody waiting is no error
        else:
            replay.set_result(Scored(done.result().decision, replayed=True))

    future.add_done_callback(copy)
    return replay


def settled(result: Scored | BaseException) -> asyncio.Future[Scored]:
    """A future already holding ``result`` (a decision or an error)."""
    future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
    if isinstance(result, BaseException):
        future.set_exception(result)
        future.exception()
    else:
        future.set_result(result)
    return future


class InFlight:
    """The registry (see the module doc). Only touched on the event loop."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def get(self, transaction_id: str) -> Pending | None:
        return self._pending.get(transaction_id)

    def reserve(
        self, transaction_id: str, digest: str, decision: Decision | None = None
    ) -> asyncio.Future[Scored]:
        """Mark an id as being decided; its future settles once its record is durable."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._pending[transaction_id] = Pending(digest, decision, future)
        return future

    def attach(self, decision: Decision, future: asyncio.Future[Scored]) -> None:
        """The decision for a reserved id, now that it is made (kept for rewriting)."""
        pending = self._pending.get(decision.transaction_id)
        if pending is not None and pending.future is future:
            pending.decision = decision

    def done(self, transaction_id: str, future: asyncio.Future[Scored]) -> None:
        """Forget an id whose record is durable (or that turned out to be stored)."""
        pending = self._pending.get(transaction_id)
        if pending is not None and pending.future is future:
            del self._pending[transaction_id]

    def release(self, transaction_id: str, future: asyncio.Future[Scored]) -> None:
        """Forget an id that was reserved but not decided (a lookup that refused it)."""
        self.done(transaction_id, future)

    def __len__(self) -> int:
        return len(self._pending)

    def futures(self) -> list[asyncio.Future[Scored]]:
        """The future of every registered id (settled or not)."""
        return [pending.future for pending in self._pending.values()]

    def unsettled(self) -> int:
        """Ids still being decided or written. A decision whose audit write failed stays
        registered (settled with the error) until its id is sent again: it is no work."""
        return sum(1 for pending in self._pending.values() if not pending.future.done())
