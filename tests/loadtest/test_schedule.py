"""The open-loop schedule: sends on time whatever the answers, bounded, warm-up excluded."""

from __future__ import annotations

import itertools

import pytest

from loadtest.recorder import DROPPED, TIMEOUT, Recorder
from loadtest.schedule import Plan, fixed_rate, run_schedule
from tests.loadtest.conftest import SilentTarget


def _bodies(n: int = 10_000) -> list[dict[str, object]]:
    return [{"transaction_id": str(i)} for i in range(n)]


async def test_requests_leave_on_schedule_although_none_is_answered() -> None:
    recorder = Recorder()
    target = SilentTarget(recorder)
    rate = 200.0
    await run_schedule(
        recorder, target, _bodies(), fixed_rate(rate), Plan(duration_s=0.5, drain_timeout_s=0)
    )

    # Open loop: all 100 left although not one was answered.
    assert len(target.sent_at) == 100
    intended = [i for i, _ in target.sent_at]
    gaps = [b - a for a, b in itertools.pairwise(intended)]
    assert all(gap == pytest.approx(1 / rate) for gap in gaps)
    # Each left at (or just after) its intended time, never before.
    lags = [actual - i for i, actual in target.sent_at]
    assert min(lags) >= 0
    assert sorted(lags)[len(lags) // 2] < 0.02
    # Unanswered at the end: every one is a timeout, none silently lost.
    assert recorder.sent == 100
    assert recorder.completed == 0
    assert dict(recorder.errors) == {TIMEOUT: 100}


async def test_beyond_the_outstanding_limit_requests_are_dropped_and_counted() -> None:
    recorder = Recorder()
    target = SilentTarget(recorder)
    plan = Plan(duration_s=0.2, max_outstanding=7, drain_timeout_s=0)
    await run_schedule(recorder, target, _bodies(), fixed_rate(250.0), plan)

    assert len(target.sent_at) == 7
    assert recorder.sent == 50
    assert dict(recorder.errors) == {DROPPED: 43, TIMEOUT: 7}


async def test_warmup_requests_are_sent_but_not_measured() -> None:
    recorder = Recorder()
    target = SilentTarget(recorder)
    plan = Plan(duration_s=0.2, warmup_s=0.1, drain_timeout_s=0)
    await run_schedule(recorder, target, _bodies(), fixed_rate(100.0), plan)

    assert len(target.sent_at) == 30
    assert recorder.sent == 20
    # The 10 warm-up requests were abandoned too, but only the measured 20 count.
    assert dict(recorder.errors) == {TIMEOUT: 20}


async def test_the_schedule_follows_given_offsets() -> None:
    recorder = Recorder()
    target = SilentTarget(recorder)
    offsets = [0.0, 0.0, 0.05, 0.12, 0.5]
    await run_schedule(
        recorder, target, _bodies(5), offsets, Plan(duration_s=0.3, drain_timeout_s=0)
    )

    intended = [i for i, _ in target.sent_at]
    assert [round(t - intended[0], 6) for t in intended] == [0.0, 0.0, 0.05, 0.12]
    assert [b["transaction_id"] for b in target.bodies] == ["0", "1", "2", "3"]
