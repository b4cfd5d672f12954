"""The admission arithmetic (a clock of our own: no sleeps) and its settings."""

from __future__ import annotations

import asyncio

import pytest

from service.admission import AdmissionControl
from service.cli.errors import UserError, load_settings
from service.errors import Overloaded, RateLimited
from service.loop_lag import PERIOD_S, LoopLag
from service.rate_limit import RateLimits

KEY = "k" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_service_time_is_measured_from_the_gaps_between_answers() -> None:
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=10.0, min_queue=1, clock=clock)
    for _ in range(6000):  # answers 2 ms apart while busy
        control.admit(1, clock.now)
        clock.now += 0.002
        control.done(1)
    assert control.service_ms == pytest.approx(2.0, rel=0.01)


def test_idle_time_is_not_service_time() -> None:
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=2.0, min_queue=1, clock=clock)
    for _ in range(500):
        clock.now += 10.0  # a long quiet spell, then one payment answered in 2 ms
        control.admit(1, clock.now)
        clock.now += 0.002
        control.done(1)
    assert control.service_ms == pytest.approx(2.0)


def test_a_payment_is_shed_when_the_queue_would_outlast_its_budget() -> None:
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=10.0, min_queue=1, clock=clock)
    for _ in range(5):
        control.admit(1, clock.now)  # 10, 20 ... 50 ms: within the default budget
    with pytest.raises(Overloaded) as shed:
        control.admit(1, clock.now)
    assert shed.value.headers == {"Retry-After": "1"}
    assert control.queued == 5
    control.admit(1, clock.now, budget_ms=100.0)  # a larger budget of its own fits
    with pytest.raises(Overloaded):  # time already spent counts against the budget
        control.admit(1, clock.now - 0.045, budget_ms=100.0)


def test_an_idle_service_admits_any_batch() -> None:
    control = AdmissionControl(50.0, initial_service_ms=10.0, min_queue=1, clock=Clock())
    control.admit(500, 0.0)  # 5 s of work, but nothing could answer it sooner
    assert control.queued == 500


def test_below_the_minimum_queue_nothing_is_shed() -> None:
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=100.0, clock=clock)
    for _ in range(8):  # 100 ms each against 50 ms of budget, yet a shallow queue
        control.admit(1, clock.now)
    with pytest.raises(Overloaded):
        control.admit(1, clock.now)


def test_a_lone_payments_latency_is_not_taken_for_the_time_per_decision() -> None:
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=1.0, clock=clock)
    for _ in range(500):  # two in flight, 20 ms each (an fsync, a busy machine)
        control.admit(2, clock.now)
        clock.now += 0.020
        control.done(2)
    assert control.service_ms == 1.0
    for _ in range(8):  # a deep queue: answers 0.5 ms apart measure the throughput
        control.admit(1, clock.now)
    for _ in range(6000):
        control.admit(1, clock.now)
        clock.now += 0.0005
        control.done(1)
    assert control.service_ms == pytest.approx(0.5, rel=0.01)


def test_a_key_over_its_rate_is_refused_and_the_others_are_not() -> None:
    clock = Clock()
    shed: list[str] = []
    control = AdmissionControl(
        50.0, enabled=False, clock=clock, rates=RateLimits({"a": 10.0}), on_shed=shed.append
    )
    control.admit(10, clock.now, api_key="a")  # a second's worth at once
    with pytest.raises(RateLimited):
        control.admit(1, clock.now, api_key="a")
    control.admit(100, clock.now, api_key="b")
    clock.now += 0.11  # one token back (and a little)
    control.admit(1, clock.now, api_key="a")
    assert shed == ["rate_limit"]


def test_a_payment_shed_for_its_deadline_does_not_spend_its_keys_rate() -> None:
    clock = Clock()
    control = AdmissionControl(
        5.0, initial_service_ms=10.0, min_queue=1, clock=clock, rates=RateLimits({"a": 1.0})
    )
    control.admit(1, clock.now)  # one queued: the next cannot be answered within 5 ms
    with pytest.raises(Overloaded) as shed:
        control.admit(1, clock.now, api_key="a")
    assert not isinstance(shed.value, RateLimited)
    control.enabled = False
    control.admit(1, clock.now, api_key="a")  # the token was given back


@pytest.mark.parametrize("value", ["nocolon", f"{KEY}:fast", f"{KEY}:0", f"{KEY}:-5", ":5"])
def test_a_bad_rate_table_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RISKSCORE_API_KEYS", KEY)
    monkeypatch.setenv("RISKSCORE_API_KEY_RATES", value)
    with pytest.raises(UserError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("invalid configuration: RISKSCORE_API_KEY_RATES: ")
    assert KEY not in message  # a key is a secret, even in an error


def test_a_rate_for_an_unknown_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSCORE_API_KEYS", KEY)
    monkeypatch.setenv("RISKSCORE_API_KEY_RATES", f"{KEY}:50, {'z' * 20}:5")
    with pytest.raises(UserError, match="RISKSCORE_API_KEY_RATES: 1 key"):
        load_settings()
    monkeypatch.setenv("RISKSCORE_API_KEY_RATES", f"{KEY}:50,")
    assert load_settings().admission.rates == {KEY: 50.0}


def test_micro_batched_answers_measure_the_time_per_decision() -> None:
    # A deep queue answered 64 at a time every 32 ms: one long gap, then 63 of nothing.
    # The process decides a payment every 0.5 ms; capping each gap against stalls took
    # only the long gaps' capped part and drove the estimate towards zero (nothing shed).
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=1.0, clock=clock)
    control.admit(64, clock.now, budget_ms=1e6)
    for _ in range(200):
        control.admit(64, clock.now, budget_ms=1e6)
        clock.now += 0.032
        for _ in range(64):
            control.done(1)
    assert control.service_ms == pytest.approx(0.5, rel=0.01)


def _answer_at_pace(control: AdmissionControl, clock: Clock, answers: int, gap_s: float) -> None:
    for _ in range(answers):
        control.admit(1, clock.now)
        clock.now += gap_s
        control.done(1)


def test_one_stall_does_not_set_the_service_time() -> None:
    # The event loop held for 20 s (a large checkpoint's snapshot) while payments were
    # queued: the window holding it is no sample of the pace of service.
    clock = Clock()
    control = AdmissionControl(50.0, initial_service_ms=1.0, min_queue=1, clock=clock)
    for _ in range(10):
        control.admit(1, clock.now)
    clock.now += 20.0
    control.done(1)
    _answer_at_pace(control, clock, 255, 0.001)  # the rest of that window
    assert control.service_ms <= 1.0 + 0.25 * 7.0  # one window, counted as 8 ms at most
    _answer_at_pace(control, clock, 12 * 256, 0.001)  # a dozen windows at the real pace
    assert control.service_ms < 1.1


def test_a_wait_before_the_handler_counts_against_the_budget() -> None:
    # A saturated loop leaves requests in their sockets: the handler's clock starts late.
    lag = [0.0]
    clock = Clock()
    control = AdmissionControl(
        50.0, initial_service_ms=1.0, clock=clock, loop_lag_ms=lambda: lag[0]
    )
    for _ in range(10):
        control.admit(1, clock.now)  # 11 ms predicted: well within 50 ms
    lag[0] = 45.0  # the loop runs its callbacks 45 ms late
    with pytest.raises(Overloaded):
        control.admit(1, clock.now)
    lag[0] = 0.0
    control.admit(1, clock.now)


async def test_the_loop_lag_is_how_late_its_timer_ran() -> None:
    clock = Clock()
    lag = LoopLag(clock)
    assert lag.current_ms() == 0.0  # starts the timer
    fired = asyncio.get_running_loop().create_future()
    original = lag._tick

    def tick(loop: asyncio.AbstractEventLoop) -> None:
        clock.now += PERIOD_S + 0.030  # the loop came round 30 ms after the tick was due
        original(loop)
        if not fired.done():
            fired.set_result(None)

    lag._tick = tick  # type: ignore[method-assign]
    lag.stop()
    lag.current_ms()  # rescheduled with the wrapped tick
    await fired
    lag.stop()
    assert lag.lag_ms == pytest.approx(30.0)
