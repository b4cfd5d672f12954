"""The second stage's composition, its nested split and its guard (issue 16).

The composition must rank an in-band payment consistently against payments the fast score
decided alone: whatever the stage says, the served score stays inside the band's interval.
The split must give early stopping, the band choice and the guard days of their own. The
guard must close the band of a stage that has nothing to add.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import average_precision, sigmoid
from models.sequence_artifacts import Band, Combination, QuantileMap
from models.train.cascade_fit import cascade_scores, fit_cascade, fit_quantile_map
from models.train.cascade_guard import GuardVerdict, bootstrap_ap, guard
from models.train.nested_split import nested_split

BAND = Band(low=0.01, high=0.5)


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def _rule(fast_p: np.ndarray) -> Combination:
    """A rule that trusts the sequence logit heavily (as fitted ones can) with its map."""
    rule = Combination(intercept=-1.0, fast_weight=0.5, sequence_weight=2.0)
    z = rule.intercept + rule.fast_weight * _logit(fast_p)
    return rule.model_copy(update={"mapping": fit_quantile_map(z, fast_p)})


def test_a_sure_sequence_score_cannot_lift_a_payment_above_the_band() -> None:
    rng = np.random.default_rng(1)
    fast_p = rng.uniform(BAND.low, BAND.high, 2000)
    rule = _rule(fast_p)
    # At the band's edges: a payment just inside the band whose sequence says "fraud" for
    # sure, and one just inside whose sequence says "genuine" for sure.
    top = rule.combine(float(_logit(BAND.low)), 50.0)
    bottom = rule.combine(float(_logit(BAND.high - 1e-9)), -50.0)
    assert BAND.low <= bottom <= top < BAND.high
    # Payments the fast score decided alone keep their side of every in-band payment.
    assert top < BAND.high <= 0.6 and bottom >= BAND.low > 0.005
    # Without the map (the old composition) the same payment leaves the band.
    plain = Combination(intercept=-1.0, fast_weight=0.5, sequence_weight=2.0)
    assert plain.combine(float(_logit(BAND.low)), 50.0) > BAND.high


def test_the_vectorised_composition_serves_what_the_scorer_serves() -> None:
    rng = np.random.default_rng(2)
    fast_raw = _logit(rng.uniform(0.001, 0.9, 500))
    sequence = rng.normal(0, 4, 500)
    fast_p = sigmoid(fast_raw)
    rule = _rule(fast_p[(fast_p >= BAND.low) & (fast_p < BAND.high)])
    served, inside = cascade_scores(BAND, rule, fast_raw, sequence)
    one_by_one = [
        rule.combine(float(r), float(s)) if i else float(sigmoid(r))
        for r, s, i in zip(fast_raw, sequence, inside, strict=True)
    ]
    assert served == pytest.approx(one_by_one, abs=1e-12)
    # The global order: every in-band served score lies between the fast-only ones.
    assert served[inside].min() >= served[~inside & (served < BAND.low)].max(initial=0)
    assert served[inside].max() < served[~inside & (served >= BAND.high)].min(initial=1)


def test_the_map_keeps_the_fast_scores_distribution_for_the_thresholds() -> None:
    rng = np.random.default_rng(3)
    fast_p = rng.uniform(BAND.low, BAND.high, 5000)
    z = rng.normal(0, 3, 5000)
    mapping = fit_quantile_map(z, fast_p)
    served = np.array([mapping.apply(v) for v in z])
    # A threshold inside the band sends (about) the same share of in-band traffic past it.
    for threshold in (0.05, 0.2, 0.4):
        assert np.mean(served >= threshold) == pytest.approx(np.mean(fast_p >= threshold), abs=0.01)
    # Monotone: a higher combined log-odds never serves a lower score.
    ordered = np.array([mapping.apply(v) for v in np.sort(z)])
    assert np.all(np.diff(ordered) >= 0)


def test_a_quantile_map_must_be_monotone() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        QuantileMap(log_odds=[0.0, 0.0], probability=[0.1, 0.2])
    with pytest.raises(ValueError, match="non-decreasing"):
        QuantileMap(log_odds=[0.0, 1.0], probability=[0.2, 0.1])


def test_the_nested_split_gives_each_choice_days_of_its_own() -> None:
    days = np.repeat(np.arange(100, 107), 10)  # seven days, ten payments each
    rows = np.arange(1000, 1070)
    split = nested_split(rows, days)
    parts = [set(days[np.isin(rows, p)]) for p in (split.stop, split.choice, split.guard)]
    assert parts == [{100, 101}, {102, 103, 104}, {105, 106}]
    assert sorted(np.concatenate([split.stop, split.choice, split.guard])) == rows.tolist()
    three = nested_split(rows[:30], days[:30])
    assert [len(three.stop), len(three.choice), len(three.guard)] == [10, 10, 10]
    with pytest.raises(ValueError, match="one day each"):
        nested_split(rows[:20], days[:20])


def _simulated(rng: np.random.Generator, n: int, signal: float) -> tuple[np.ndarray, ...]:
    """Fast log-odds, a sequence logit carrying ``signal`` beyond it, and labels."""
    fast_raw = rng.normal(-4.0, 1.5, n)
    hidden = rng.normal(0.0, 1.0, n)
    y = (rng.uniform(size=n) < sigmoid(fast_raw + 2.5 * hidden)).astype(np.int8)
    sequence = signal * hidden + rng.normal(0.0, 1.0, n)
    return fast_raw, sequence, y


def _verdict(seed: int, signal: float) -> GuardVerdict:
    """Band and rule chosen on the first half of the rows, guarded on the second."""
    rng = np.random.default_rng(seed)
    fast_raw, sequence, y = _simulated(rng, 40_000, signal)
    epoch = np.arange(len(y))
    choice, held = slice(0, 20_000), slice(20_000, None)
    fit = fit_cascade(fast_raw[choice], sequence[choice], y[choice], epoch[choice])
    served, inside = cascade_scores(fit.band, fit.combination, fast_raw[held], sequence[held])
    return guard(y[held], sigmoid(fast_raw[held]), served, inside, draws=300)


def test_the_guard_closes_the_band_of_a_stage_without_signal() -> None:
    verdict = _verdict(4, signal=0.0)
    assert not verdict.open and "not shown positive" in verdict.reason
    assert verdict.to_json()["verdict"] == "closed"


def test_the_guard_opens_the_band_of_a_stage_with_signal() -> None:
    verdict = _verdict(5, signal=3.0)
    assert verdict.open and verdict.lower_bound > 0 and verdict.lift > 0
    assert 0 < verdict.escalated_share <= 0.2


def test_the_bootstrap_average_precision_agrees_with_the_plain_one() -> None:
    rng = np.random.default_rng(6)
    y = (rng.uniform(size=3000) < 0.05).astype(np.int8)
    s = np.round(rng.uniform(size=3000) + y * 0.3, 2)  # ties, as tree scores have
    draws = bootstrap_ap(y, s, 200, seed=1)
    assert np.median(draws) == pytest.approx(average_precision(y, s), abs=0.02)
    # One draw's weights are one resample: its AP is the plain AP of that resample.
    rows = np.random.default_rng(1).integers(0, len(y), len(y))
    assert draws[0] == pytest.approx(average_precision(y[rows], s[rows]), abs=1e-9)
