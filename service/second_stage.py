"""Escalation: in-band payments go to the sequence stage in a task, then to the record.

A task, not an ``await`` in the request: a client that disconnects must not cancel a
decision that retries are already waiting for. The payments of one micro-batch that have
the same latency budget share one call (one batched model run) and the earliest of their
deadlines, so none waits past its own budget; a payment with another budget gets its own
call, so one client's tight deadline never takes the stage away from another's payment.
Within a call the deadlines differ only by the spread of the payments' arrival in their
micro-batch (one turn of the event loop): a payment may be given that much less than its
own budget, never more.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from explain.decision import Decision
from features.sequence import SequenceView
from models.cascade import Cascade, SequenceResult
from models.rules.policy import Policy
from service.decisions import build_decision
from service.fast_path import Draft

log = logging.getLogger(__name__)

_ERROR = SequenceResult(False, "error")

# Called with the finished decisions (in the order given) once the stage has spoken.
Record = Callable[[list[Decision]], None]
# Called instead when no decision could be built at all: nobody may be left waiting.
Abandon = Callable[[BaseException], None]


class SecondStage:
    """Runs the cascade for drafts in the band; keeps track of what is still running.

    The cascade is the one of the drafts' model bundle (one fast-path run, one bundle): a
    promotion meanwhile does not pair a payment with another version's second stage.
    """

    def __init__(self, budget_ms: float, policy: Policy | None = None) -> None:
        self._policy = policy
        self._budget_ms = budget_ms
        self._running: set[asyncio.Task[None]] = set()
        # Closed at drain; weak, so a stage retired by a promotion (its ONNX sessions, its
        # thread) is freed rather than kept until shutdown.
        self._used: weakref.WeakSet[Cascade] = weakref.WeakSet()

    def escalate(
        self,
        drafts: list[Draft],
        received: list[float],
        budgets_ms: list[float | None],
        record: Record,
        abandon: Abandon,
    ) -> None:
        """Start the stage for ``drafts`` (``received``: their arrival instants,
        ``budgets_ms``: their own budgets or None for the default); ``record`` gets the
        decisions, in the order given, once every call has spoken."""
        cascade = drafts[0].bundle.cascade
        assert cascade is not None, "a draft with a sequence view has a second stage"
        self._used.add(cascade)
        groups: dict[float, list[int]] = {}
        for i, budget in enumerate(budgets_ms):
            groups.setdefault(self._budget_ms if budget is None else budget, []).append(i)
        task = asyncio.create_task(self._run(cascade, drafts, received, groups, record, abandon))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(
        self,
        cascade: Cascade,
        drafts: list[Draft],
        received: list[float],
        groups: dict[float, list[int]],
        record: Record,
        abandon: Abandon,
    ) -> None:
        try:
            results = await self._results(cascade, drafts, received, groups)
            decisions = []
            for draft, started, result in zip(drafts, received, results, strict=True):
                try:
                    decision = build_decision(draft, started, result, cascade, self._policy)
                except Exception:
                    log.exception(
                        "the sequence stage's result was unusable; the fast score decides",
                        extra={"transaction_id": draft.tx.transaction_id},
                    )
                    decision = build_decision(draft, started, _ERROR, cascade, self._policy)
                decisions.append(decision)
        except Exception as exc:
            log.exception("no decision could be built for payments of the sequence stage")
            abandon(exc)
            return
        record(decisions)

    async def _results(
        self,
        cascade: Cascade,
        drafts: list[Draft],
        received: list[float],
        groups: dict[float, list[int]],
    ) -> list[SequenceResult]:
        """The stage's result per draft: one call per budget, all calls at once."""
        calls = []
        for budget_ms, members in groups.items():
            deadline = min(received[i] for i in members) + budget_ms / 1000.0
            views = [drafts[i].view for i in members]
            raws = [drafts[i].raw for i in members]
            calls.append(self._call(cascade, [v for v in views if v is not None], raws, deadline))
        results: list[SequenceResult] = [_ERROR] * len(drafts)
        for members, answers in zip(groups.values(), await asyncio.gather(*calls), strict=True):
            for i, answer in zip(members, answers, strict=True):
                results[i] = answer
        return results

    async def _call(
        self, cascade: Cascade, views: list[SequenceView], raws: list[float], deadline: float
    ) -> list[SequenceResult]:
        try:
            return await cascade.run(views, raws, deadline)
        except Exception:
            # Whatever went wrong, the fast decision stands: the stage is an extra.
            log.exception("the sequence stage failed; the fast score decides")
            return [_ERROR] * len(raws)

    async def drain(self, timeout_s: float, current: Cascade | None) -> None:
        """Wait for stage runs still in flight, then stop the stages' threads."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        for cascade in {*self._used, *([current] if current is not None else [])}:
            cascade.close()
