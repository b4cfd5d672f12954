"""The overload benchmark's arithmetic: what counts as admitted, refused, other, lost."""

from __future__ import annotations

import json

from loadtest.bench_overload import _recovered_within, _refusal_cost, _summarise
from loadtest.recorder import Recorder


def _body(transaction_id: str) -> bytes:
    return json.dumps({"transaction_id": transaction_id, "score": 0.1}).encode()


def test_admitted_and_refused_are_summarised_apart_and_other_outcomes_are_errors() -> None:
    recorder = Recorder(measure_from=10.0)
    answers = [
        (9.5, 9.6, 200, _body("warm")),  # warm-up: acknowledged, not measured
        (10.0, 10.020, 200, _body("a")),
        (10.5, 10.540, 200, _body("b")),
        (10.6, 10.601, 429, b"{}"),
        (11.2, 11.203, 429, b"{}"),
        (11.3, 11.4, 503, b"{}"),
    ]
    acknowledged: list[str] = []
    report = {"sent": 5, "errors": {"429": 2, "503": 1, "timeout": 1}}
    summary = _summarise(answers, recorder, report, 5.0, 2.0, acknowledged)
    assert acknowledged == ["warm", "a", "b"]
    assert summary["statuses"] == {"200": 2, "429": 2, "503": 1}
    assert summary["admitted_latency"]["n"] == 2
    assert round(summary["admitted_latency"]["max_ms"]) == 40
    assert round(summary["refused_latency"]["max_ms"]) == 3
    assert summary["other_errors"] == {"503": 1, "timeout": 1}
    assert summary["admitted_per_s"] == 1.0
    assert summary["completed_per_s"] == 1.0  # every answer within the phase's 2 s
    # Second 0 had both admitted answers; second 1 none (only refusals and an error).
    first, second = summary["p99_by_second_ms"]
    assert round(first) == 40 and second is None


def test_the_probes_capacity_counts_the_drain_after_the_phase() -> None:
    # 4 payments offered in 1 s, answered only by 4 s: the service completes 1 a second,
    # whatever the rate it was offered.
    recorder = Recorder(measure_from=10.0)
    answers = [(10.0 + i / 4, 11.0 + i, 200, _body(str(i))) for i in range(4)]
    summary = _summarise(answers, recorder, {"sent": 4, "errors": {}}, 4.0, 1.0, [])
    assert summary["admitted_per_s"] == 4.0
    assert summary["completed_per_s"] == 1.0


def test_recovery_is_the_first_second_from_which_every_second_holds() -> None:
    assert _recovered_within([400.0, 80.0, 20.0, 60.0, 10.0, 12.0], 50.0) == 4.0
    assert _recovered_within([10.0, 12.0], 50.0) == 0.0
    assert _recovered_within([10.0, None], 50.0) is None
    assert _recovered_within([10.0, 90.0], 50.0) is None


def test_a_refusals_cost_is_what_the_overload_spent_beyond_its_decisions() -> None:
    probe = {"server_cpu_ms_per_answer": 0.5}
    overload = {"server_cpu_s": 0.2, "answers_with_warmup": {"200": 100, "429": 500}}
    # 200 ms of CPU: 100 decisions at 0.5 ms, the other 150 ms over 500 refusals.
    assert _refusal_cost(probe, overload) == 0.3
    assert _refusal_cost(None, overload) is None
    assert _refusal_cost(probe, {**overload, "answers_with_warmup": {"200": 3}}) is None
