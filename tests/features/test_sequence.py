"""Sequences: serving (ring buffers fed by the online engine) equals training (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.data import TransactionFrame, frame_from_pandas, load_transactions
from features.definitions import DEFAULT_FEATURES
from features.offline import compute_features
from features.rebuild import rebuild_state
from features.sequence import OnlineSequences, SequenceSpec, assemble, sequence_index
from features.simulator import SimulationConfig, simulate

NAMES = tuple(d.name for d in DEFAULT_FEATURES)


def online_sequences(history: TransactionFrame, spec: SequenceSpec) -> np.ndarray:
    """Every row's sequence as serving builds it: replayed features into ring buffers."""
    features = rebuild_state(history)  # the online engine's own vectors, labels fed as known
    sequences = OnlineSequences(spec)
    out = np.empty((len(history), spec.length, spec.width))
    for row in range(len(history)):
        customer = history.customer_id[row]
        t = int(history.epoch_ms[row])
        sequences.append(
            customer, history.transaction_id[row], t, history.amount[row], features[row]
        )
        out[row] = sequences.sequence(customer, t)
    return out


def offline_sequences(history: TransactionFrame, spec: SequenceSpec) -> np.ndarray:
    index = sequence_index(history, spec.length)
    return assemble(compute_features(history), history.epoch_ms, index, dtype=np.float64)


def assert_parity(online: np.ndarray, offline: np.ndarray) -> None:
    worst = np.max(np.abs(online - offline) / np.maximum(1.0, np.abs(offline)))
    assert worst <= 1e-9, worst


def test_online_sequences_equal_offline_on_simulated_history() -> None:
    history = frame_from_pandas(
        simulate(SimulationConfig(customers=120, terminals=200, days=40, seed=5)), "simulated"
    )
    spec = SequenceSpec(length=8, feature_names=NAMES)
    online = online_sequences(history, spec)
    offline = offline_sequences(history, spec)
    assert_parity(online, offline)
    # Meaningful only if histories are both short (padded) and full (wrapped rings).
    flags = offline[:, :, -1]
    assert (flags[:, 0] == 0).any() and (flags.sum(axis=1) == spec.length).mean() > 0.5


@pytest.mark.handbook
def test_online_sequences_equal_offline_on_a_handbook_slice(handbook_dir: Path) -> None:
    history = load_transactions(handbook_dir / "transactions_dev.csv.gz")
    days = history.day
    history = history.take(days < days.min() + np.timedelta64(21, "D"))
    spec = SequenceSpec(length=32, feature_names=NAMES)
    assert_parity(online_sequences(history, spec), offline_sequences(history, spec))


def test_positions_hold_features_gaps_and_padding() -> None:
    spec = SequenceSpec(length=4, feature_names=("A", "B"), max_age_ms=60_000)
    sequences = OnlineSequences(spec)
    for i, t in enumerate((1_000, 3_000, 6_000)):
        sequences.append("c", f"t{i}", t, 1.0 + i, np.array([1.0 + i, -float(i)]))
    view = sequences.view("c", 6_000)
    assert view.transaction_ids == ["t0", "t1", "t2"]
    assert view.values.tolist() == [
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 5.0, 1.0],
        [2.0, -1.0, 3.0, 1.0],
        [3.0, -2.0, 0.0, 1.0],
    ]
    # A fifth transaction pushes the oldest out of a ring of four.
    for i, t in enumerate((7_000, 8_000), start=3):
        sequences.append("c", f"t{i}", t, 1.0, np.array([9.0, 9.0]))
    assert sequences.view("c", 8_000).transaction_ids == ["t1", "t2", "t3", "t4"]


def test_idle_customers_are_forgotten() -> None:
    sequences = OnlineSequences(SequenceSpec(length=2, feature_names=("A",), max_age_ms=1_000))
    sequences.append("old", "a", 0, 1.0, np.array([1.0]))
    sequences.append("new", "b", 5_000, 1.0, np.array([1.0]))
    sequences.expire(5_000)
    assert len(sequences) == 1
    assert sequences.view("old", 5_000).transaction_ids == []


@pytest.mark.parametrize("expire_between", [False, True])
def test_payments_older_than_the_max_age_leave_sequences_in_both_engines(
    expire_between: bool,
) -> None:
    # Whether or not the idle customer was swept in between, the result is the same, and
    # it is what the offline engine computes.
    day = 86_400_000
    spec = SequenceSpec(length=4, feature_names=("A",), max_age_ms=10 * day)
    times = np.array([0, day, 12 * day, 13 * day], dtype=np.int64)
    history = TransactionFrame(
        transaction_id=np.array(["a0", "a1", "a2", "a3"]),
        customer_id=np.array(["c"] * 4),
        terminal_id=np.array(["t"] * 4),
        epoch_ms=times,
        local_epoch_ms=times,
        amount=np.array([1.0, 2.0, 3.0, 4.0]),
    )
    features = history.amount.reshape(-1, 1)
    offline = assemble(features, times, sequence_index(history, 4, spec.max_age_ms), np.float64)
    online = OnlineSequences(spec)
    for row in range(4):
        if expire_between and row == 2:
            online.expire(int(times[row]))
        online.append("c", history.transaction_id[row], int(times[row]), 1.0, features[row])
        np.testing.assert_array_equal(online.sequence("c", int(times[row])), offline[row])
    assert online.view("c", int(times[3])).transaction_ids == ["a2", "a3"]


def test_a_late_payment_sees_only_earlier_payments_in_time_order() -> None:
    spec = SequenceSpec(length=4, feature_names=("A",), max_age_ms=10**9)
    sequences = OnlineSequences(spec)
    for tid, t in (("a", 1_000), ("b", 5_000), ("late", 3_000)):
        sequences.append("c", tid, t, 1.0, np.array([1.0]))
    assert sequences.view("c", 3_000).transaction_ids == ["a", "late"]
    assert sequences.view("c", 5_000).transaction_ids == ["a", "late", "b"]


def test_a_customer_never_seen_gets_an_all_padding_sequence() -> None:
    spec = SequenceSpec(length=3, feature_names=("A",))
    values = OnlineSequences(spec).sequence("nobody", 0)
    assert values.shape == (3, spec.width) and not values.any()
