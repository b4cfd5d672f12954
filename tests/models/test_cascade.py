"""The cascade policy with the shipped student (real ONNX Runtime): admission, timeouts,
errors, probing, and the combination rule."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from features.sequence import SequenceView
from models import cascade as cascade_module
from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.cascade import Cascade, FaultInjection, LatencyEstimate
from models.sequence import SequenceModel
from models.sequence_artifacts import Band, Combination


@pytest.fixture(scope="module")
def model() -> SequenceModel:
    from models.fast import FastModel

    return SequenceModel.load(
        default_sequence_artifact_dir(), FastModel.load(default_artifact_dir()).version
    )


def view(model: SequenceModel, earlier: int = 5) -> SequenceView:
    spec = model.spec
    values = np.zeros((spec.length, spec.width))
    rng = np.random.default_rng(0)
    n = earlier + 1
    values[-n:, :-2] = rng.uniform(0, 50, size=(n, spec.width - 2))
    values[-n:, -2] = np.arange(n)[::-1] * 3600.0
    values[-n:, -1] = 1.0
    ids = [f"t{i}" for i in range(n)]
    return SequenceView(values, ids, list(range(n)), [10.0] * n)


@pytest.fixture(autouse=True, params=["thread", "inline"])
def stage_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test in both modes: the stage on its own thread (several cores) and inline on
    the event loop (one core), as the cascade chooses from the CPUs it may run on."""
    cores = {0} if request.param == "inline" else {0, 1}
    monkeypatch.setattr(cascade_module.os, "sched_getaffinity", lambda pid: cores)
    return str(request.param)


def soon(ms: float) -> float:
    return time.perf_counter() + ms / 1000.0


async def test_an_admitted_payment_gets_the_combined_score(model: SequenceModel) -> None:
    # Only the score: each earlier payment's effect is computed when the decision is read
    # (tests/service/test_decision_path.py), not on the request path.
    cascade = Cascade(model, reserve_ms=0.0)
    (result,) = await cascade.run([view(model, earlier=5)], [-2.0], soon(1000))
    assert result.decided and result.fallback_reason is None
    logit = float(model.logits(view(model, earlier=5).values[None])[0])
    assert result.sequence_score == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-5)
    assert result.score == pytest.approx(cascade.combination.combine(-2.0, logit), rel=1e-5)
    cascade.close()


async def test_occlusion_effects_are_full_minus_left_out_logits(model: SequenceModel) -> None:
    v = view(model, earlier=3)
    ((full, effects),) = model.explain([v.values])
    real = np.flatnonzero(v.values[:-1, -1] > 0)
    for k, position in enumerate(real):
        left_out = v.values.copy()
        left_out[position] = 0.0
        assert effects[k] == pytest.approx(full - model.logits(left_out[None])[0], abs=1e-5)


async def test_no_time_left_means_budget_fallback_without_running(model: SequenceModel) -> None:
    cascade = Cascade(model, reserve_ms=5.0, probe_interval_s=3600)
    (result,) = await cascade.run([view(model)], [0.0], soon(2.0))  # less than the reserve
    assert not result.decided and result.fallback_reason == "budget"
    assert result.seconds == 0.0
    cascade.close()


async def test_a_slow_stage_times_out_at_the_deadline_then_is_not_admitted(
    model: SequenceModel,
) -> None:
    cascade = Cascade(
        model, reserve_ms=0.0, faults=FaultInjection(delay_ms=10_000), probe_interval_s=3600
    )
    # The first request is admitted on the build-time latency estimate, and times out.
    (first,) = await cascade.run([view(model)], [0.0], soon(30))
    assert first.fallback_reason == "timeout"
    assert first.seconds < 10.0  # it gave up at the deadline, not after the delay
    # The estimate now holds that timeout: the next one is refused up front.
    (second,) = await cascade.run([view(model)], [0.0], soon(20))
    assert second.fallback_reason == "budget"
    cascade.close()


async def test_a_refused_stage_is_probed_again_after_the_interval(model: SequenceModel) -> None:
    cascade = Cascade(model, reserve_ms=0.0, probe_interval_s=0.0)
    cascade.latency.observe(10.0)  # looks hopeless: 10 s per sequence
    (result,) = await cascade.run([view(model)], [0.0], soon(1000))
    assert result.decided  # probed anyway, and it was fast
    cascade.close()


async def test_failures_fall_back_with_reason_error(model: SequenceModel) -> None:
    cascade = Cascade(model, faults=FaultInjection(error_rate=1.0))
    results = await cascade.run([view(model), view(model, 2)], [0.0, 1.0], soon(1000))
    assert [r.fallback_reason for r in results] == ["error", "error"]
    cascade.close()


async def test_batches_are_admitted_on_their_whole_cost(model: SequenceModel) -> None:
    cascade = Cascade(model, reserve_ms=0.0, probe_interval_s=3600)
    cascade.latency.observe(0.004)  # 4 ms per sequence
    ten = [view(model)] * 10
    results = await cascade.run(ten, [0.0] * 10, soon(20))  # 40 ms needed, 20 left
    assert {r.fallback_reason for r in results} == {"budget"}
    cascade.close()


async def test_concurrent_runs_all_finish_in_order(model: SequenceModel) -> None:
    cascade = Cascade(model, reserve_ms=0.0)
    views = [view(model, k) for k in range(1, 6)]
    results = await asyncio.gather(*(cascade.run([v], [0.0], soon(2000)) for v in views))
    # Each run got its own sequence's score back, whatever order the thread ran them in.
    expected = [1 / (1 + math.exp(-float(model.logits(v.values[None])[0]))) for v in views]
    assert [r[0].sequence_score for r in results] == pytest.approx(expected, rel=1e-6)
    cascade.close()


def test_latency_estimate_starts_at_the_prior_then_follows_the_tail() -> None:
    estimate = LatencyEstimate(prior_ms=2.0, window=100)
    assert estimate.p99() == pytest.approx(0.002)
    for _ in range(99):
        estimate.observe(0.001)
    estimate.observe(0.050)
    assert 0.001 < estimate.p99() <= 0.050


def test_combination_is_finite_for_any_inputs_and_bands_are_ordered() -> None:
    rule = Combination(intercept=0.0, fast_weight=1.0, sequence_weight=1.0)
    assert rule.combine(1e6, 1e6) == 1.0 and rule.combine(-1e6, -1e6) == 0.0
    assert Band(low=0.1, high=0.5).contains(0.1) and not Band(low=0.1, high=0.5).contains(0.5)
    with pytest.raises(ValueError, match="not be above"):
        Band(low=0.5, high=0.1)


async def test_a_non_finite_score_falls_back_with_reason_error(
    model: SequenceModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    cascade = Cascade(model, reserve_ms=0.0)
    monkeypatch.setattr(cascade, "_logits", lambda seqs: [math.nan for _ in seqs])
    (result,) = await cascade.run([view(model)], [0.0], soon(1000))
    assert result.fallback_reason == "error"
    cascade.close()


async def test_a_closed_stage_falls_back_with_reason_error(model: SequenceModel) -> None:
    cascade = Cascade(model, reserve_ms=0.0)
    cascade.close()
    results = await cascade.run([view(model)] * 2, [0.0, 0.0], soon(1000))
    assert [r.fallback_reason for r in results] == ["error", "error"]


def test_the_stage_runs_inline_only_with_a_single_core(
    model: SequenceModel, stage_mode: str
) -> None:
    cascade = Cascade(model)
    assert cascade.inline == (stage_mode == "inline")
    assert Cascade(model, inline=False).inline is False
    cascade.close()
