"""The online engine: parity with the offline engine, bounded memory, label semantics."""

from __future__ import annotations

import numpy as np
import pytest

from features import online
from features.data import TransactionFrame, frame_from_pandas
from features.definitions import DEFAULT_FEATURES, LABEL_DELAY
from features.offline import compute_features
from features.online import DuplicateTransaction, LabelOutcome, OnlineFeatureEngine
from features.rebuild import rebuild_state
from features.schema import Transaction
from features.simulator import SimulationConfig, simulate

NAMES = [d.name for d in DEFAULT_FEATURES]
DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # a Tuesday, 22:13 UTC
LABEL_DELAY_MS = int(LABEL_DELAY.total_seconds() * 1000)


def col(name: str) -> int:
    return NAMES.index(name)


@pytest.fixture(scope="module")
def simulated() -> TransactionFrame:
    # Long enough for the 30-day and 7+30-day windows to evict, and busy enough to grow
    # and compact the engine's event pool several times.
    frame = simulate(SimulationConfig(customers=300, terminals=500, days=75, seed=3))
    return frame_from_pandas(frame, source="simulated")


def test_replay_equals_offline_on_simulated_history(simulated: TransactionFrame) -> None:
    offline = compute_features(simulated)
    online = rebuild_state(simulated)
    worst = np.max(np.abs(online - offline) / np.maximum(1.0, np.abs(offline)), axis=0)
    assert worst.max() <= 1e-9, dict(zip(NAMES, worst, strict=True))
    # The comparison means something only if the label-driven features moved.
    assert offline[:, col("TERMINAL_ID_RISK_30DAY_WINDOW")].max() > 0


def test_memory_holds_exactly_the_events_windows_can_still_see(
    simulated: TransactionFrame,
) -> None:
    engine = OnlineFeatureEngine()
    rebuild_state(simulated, engine)
    watermark = int(simulated.epoch_ms.max())
    engine.expire(watermark)
    horizon = 30 * DAY_MS
    expected_customers = 0
    expected_events = 0
    for customer in np.unique(simulated.customer_id):
        times = simulated.epoch_ms[simulated.customer_id == customer]
        last = int(times.max())
        if last <= watermark - horizon:
            continue  # idle longer than any window: forgotten
        expected_customers += 1
        expected_events += int((times > last - horizon).sum())
    stats = engine.stats()
    assert stats["customer_entities"] == expected_customers
    assert stats["customer_events"] == expected_events
    assert stats["customer_events"] < len(simulated) / 2


def _update(
    engine: OnlineFeatureEngine,
    tx_id: str,
    t_ms: int,
    terminal: str = "T",
    customer: str = "C",
    amount: float = 10.0,
) -> np.ndarray:
    return engine.update_raw(tx_id, customer, terminal, t_ms, t_ms, amount)


def test_a_label_is_never_an_input_of_its_own_transaction() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0)
    assert engine.record_label("a", True) is LabelOutcome.APPLIED
    risk = col("TERMINAL_ID_RISK_1DAY_WINDOW")
    count = col("TERMINAL_ID_NB_TX_1DAY_WINDOW")
    # Within the delay the fraud is known to the engine but not yet in any window.
    soon = _update(engine, "b", T0 + 1000, customer="D")
    assert soon[risk] == 0.0 and soon[count] == 0.0
    later = _update(engine, "c", T0 + LABEL_DELAY_MS + 500, customer="E")
    assert later[count] == 1.0  # "a" only: "b" is still inside the delay
    assert later[risk] == 1.0


def test_a_label_arriving_late_updates_windows_already_holding_its_event() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0)
    _update(engine, "b", T0 + LABEL_DELAY_MS + 1000, customer="D")  # "a" now in the window
    assert engine.record_label("a", True) is LabelOutcome.APPLIED
    after = _update(engine, "c", T0 + LABEL_DELAY_MS + 2000, customer="E")
    assert after[col("TERMINAL_ID_RISK_7DAY_WINDOW")] == 1.0
    # Correcting the label removes it again.
    assert engine.record_label("a", False) is LabelOutcome.APPLIED
    corrected = _update(engine, "d", T0 + LABEL_DELAY_MS + 3000, customer="F")
    assert corrected[col("TERMINAL_ID_RISK_7DAY_WINDOW")] == 0.0


def test_label_outcomes() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0)
    assert engine.record_label("missing", True) is LabelOutcome.UNKNOWN
    assert engine.record_label("a", False) is LabelOutcome.UNCHANGED  # unknown counts as 0
    assert engine.record_label("a", True) is LabelOutcome.APPLIED
    assert engine.record_label("a", True) is LabelOutcome.UNCHANGED


def test_labels_of_forgotten_transactions_are_unknown() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0)
    far = T0 + 40 * DAY_MS  # beyond the terminal's 7 + 30 day horizon
    _update(engine, "b", far, terminal="U", customer="D")
    engine.expire(far)
    assert engine.record_label("a", True) is LabelOutcome.UNKNOWN
    # The freed slot can serve a new entity without the old label reaching it.
    fresh = _update(engine, "c", far + 1, terminal="T", customer="E")
    assert fresh[col("TERMINAL_ID_NB_TX_1HOUR_LIVE_WINDOW")] == 1.0


def test_duplicate_transaction_is_refused() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0)
    with pytest.raises(DuplicateTransaction):
        _update(engine, "a", T0 + 1)


def test_customer_windows_count_and_average() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0, amount=10.0)
    _update(engine, "b", T0 + DAY_MS - 1, amount=30.0, terminal="U")
    third = _update(engine, "c", T0 + DAY_MS, amount=50.0)  # "a" leaves the 1-day window
    assert third[col("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 2.0
    assert third[col("CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW")] == 40.0
    assert third[col("CUSTOMER_ID_NB_TX_7DAY_WINDOW")] == 3.0
    assert third[col("CUSTOMER_ID_AMOUNT_TO_MEAN_30DAY_WINDOW")] == pytest.approx(50.0 / 20.0)
    assert third[col("CUSTOMER_ID_SECONDS_SINCE_PREVIOUS")] == pytest.approx(0.001)
    assert third[col("CUSTOMER_TERMINAL_NB_TX_30DAY_WINDOW")] == 2.0  # second visit to T


def test_first_payment_has_neutral_relative_features() -> None:
    first = _update(OnlineFeatureEngine(), "a", T0, amount=99.0)
    assert first[col("CUSTOMER_ID_AMOUNT_TO_MEAN_30DAY_WINDOW")] == 1.0
    assert first[col("CUSTOMER_ID_AMOUNT_ZSCORE_30DAY_WINDOW")] == 0.0
    assert first[col("CUSTOMER_ID_SECONDS_SINCE_PREVIOUS")] == 30 * 86_400.0


def test_late_event_is_counted_at_its_entitys_latest_time() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "a", T0 + 3_600_000)
    late = _update(engine, "b", T0)  # an hour older than the customer's latest
    assert late[col("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 2.0
    assert late[col("CUSTOMER_ID_SECONDS_SINCE_PREVIOUS")] == 0.0


def test_update_from_a_transaction_uses_local_time_for_calendar_features() -> None:
    engine = OnlineFeatureEngine()
    # Saturday 01:30 in Tokyo is Friday 16:30 UTC: night and weekend by the local clock.
    tx = Transaction.model_validate(
        {
            "transaction_id": "x",
            "timestamp": "2024-03-02T01:30:00+09:00",
            "customer_id": "C",
            "terminal_id": "T",
            "amount": 5.0,
        }
    )
    row = engine.update(tx)
    assert row[col("TX_DURING_NIGHT")] == 1.0
    assert row[col("TX_DURING_WEEKEND")] == 1.0
    assert row[col("TX_AMOUNT")] == 5.0


def test_many_entities_grow_state_without_losing_any(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small reservation, so that the slot tables must grow (by copying) several times.
    monkeypatch.setattr(online, "_RESERVED_SLOTS", 256)
    engine = OnlineFeatureEngine()
    n = 5000  # more entities than the reserved slot table holds
    for i in range(n):
        _update(engine, f"tx{i}", T0 + i, customer=f"c{i % 2500}", terminal=f"t{i}")
    stats = engine.stats()
    assert stats["customer_entities"] == 2500
    assert stats["terminal_entities"] == n
    assert stats["customer_events"] == n
    again = _update(engine, "last", T0 + n, customer="c0", terminal="t0")
    assert again[col("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 3.0


def test_a_failed_update_leaves_other_entities_untouched() -> None:
    engine = OnlineFeatureEngine()
    for i in range(3):
        _update(engine, f"a{i}", T0 + i, customer="alice")
    with pytest.raises(OverflowError):
        engine.update_raw("bad", "bob", "T", 2**63, 2**63, 1.0)
    after = _update(engine, "a3", T0 + 10, customer="alice")
    assert after[col("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 4.0
    assert engine.stats()["customer_entities"] == 1  # "bob" was rolled back
    bob = _update(engine, "b0", T0 + 11, customer="bob")
    assert bob[col("CUSTOMER_ID_NB_TX_1DAY_WINDOW")] == 1.0


def test_label_references_expire_by_event_time_not_arrival() -> None:
    engine = OnlineFeatureEngine()
    _update(engine, "new", T0 + 50 * DAY_MS, terminal="U")
    _update(engine, "old", T0, terminal="V", customer="D")  # arrives late, much older
    engine.expire(T0 + 60 * DAY_MS)  # past the old one's horizon, not the new one's
    assert engine.record_label("old", True) is LabelOutcome.UNKNOWN
    assert engine.record_label("new", True) is LabelOutcome.APPLIED
