"""Escalation: in-band payments go to the sequence stage in a task, then to the record.

A task, not an ``await`` in the request: a client that disconnects must not cancel a
decision that retries are already waiting for. The payments of one micro-batch share one
call (one batched model run) and the earliest of their deadlines, so none waits past its
own budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from explain.decision import Decision
from models.cascade import Cascade, SequenceResult
from service.decisions import build_decision
from service.fast_path import Draft

log = logging.getLogger(__name__)

# Called with the finished decisions (in the order given) once the stage has spoken.
Record = Callable[[list[Decision]], None]


class SecondStage:
    """Runs the cascade for drafts in the band; keeps track of what is still running."""

    def __init__(self, cascade: Cascade, budget_ms: float) -> None:
        self.cascade = cascade
        self._budget_ms = budget_ms
        self._running: set[asyncio.Task[None]] = set()

    def escalate(
        self,
        drafts: list[Draft],
        received: list[float],
        budgets_ms: list[float | None],
        record: Record,
    ) -> None:
        """Start the stage for ``drafts`` (``received``: their arrival instants,
        ``budgets_ms``: their own budgets or None for the default); ``record`` gets the
        decisions."""
        deadline = min(
            start + (self._budget_ms if budget is None else budget) / 1000.0
            for start, budget in zip(received, budgets_ms, strict=True)
        )
        task = asyncio.create_task(self._run(drafts, received, deadline, record))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(
        self, drafts: list[Draft], received: list[float], deadline: float, record: Record
    ) -> None:
        cascade = self.cascade
        views = [d.view for d in drafts if d.view is not None]
        error = SequenceResult(False, "error")
        try:
            results = await cascade.run(views, [d.raw for d in drafts], deadline)
        except Exception:
            # Whatever went wrong, the fast decision stands: the stage is an extra.
            log.exception("the sequence stage failed; the fast score decides")
            results = [error] * len(drafts)
        decisions = []
        for draft, started, result in zip(drafts, received, results, strict=True):
            try:
                decision = build_decision(draft, started, result, cascade)
            except Exception:
                log.exception("the sequence stage's result was unusable; the fast score decides")
                decision = build_decision(draft, started, error, cascade)
            decisions.append(decision)
        record(decisions)

    async def drain(self, timeout_s: float) -> None:
        """Wait for stage runs still in flight, then stop the stage's thread."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        self.cascade.close()
