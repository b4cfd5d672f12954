"""The challenger report read from a real store, SQLite and PostgreSQL alike: a handful of
decisions, challenger rows and labels whose every figure is worked out by hand here."""

from __future__ import annotations

from datetime import timedelta

import pytest

from explain.audit import challenger_sql
from explain.audit.store import AuditStore
from explain.reports.challenger_source import read_comparison
from explain.reports.query import ChallengerPeriod
from tests.explain import test_audit_store_contract as contract
from tests.explain.test_audit_store_contract import write_all
from tests.explain.test_challenger_log import challenger_of, write_challengers
from tests.explain.test_sqlite_audit_store import BASE, make_label, make_record

backend = contract.backend
open_store = contract.open_store
store = contract.store

AS_OF = BASE + timedelta(days=30)  # every 7-day label delay has passed


@pytest.fixture
def filled(store: AuditStore) -> AuditStore:
    """Thresholds 0.5 / 0.9 (make_record). tx-0: model decline, challenger v2 approves,
    fraud (its first label said legitimate). tx-1: model review but served decline (a
    list), v2 declines, legitimate. tx-2: both approve alike, no label. tx-3: not
    shadowed (in the same minute). tx-4: only v3 scored it. tx-5: ten minutes later,
    after v2's span."""
    decisions = [
        make_record("tx-0", minutes=0, action="decline", score=0.95),
        make_record("tx-1", minutes=1, action="decline", score=0.6),
        make_record("tx-2", minutes=1, action="approve", score=0.1),
        make_record("tx-3", minutes=1, action="approve", score=0.1),
        make_record("tx-4", minutes=3, action="approve", score=0.3),
        make_record("tx-5", minutes=10, action="approve", score=0.1),
    ]
    write_all(store, *decisions)
    first, second, third, _, fourth, _ = decisions
    rows = [
        challenger_of(first, score=0.2),
        challenger_of(second, score=0.7),
        challenger_of(third, score=0.1),
        challenger_of(fourth, "v3", score=0.8),
    ]
    assert write_challengers(store, *rows) == [True] * 4
    for tid, fraud, minute in [("tx-0", False, 1), ("tx-0", True, 2), ("tx-1", False, 1)]:
        store.submit_label(make_label(tid, fraud, minute)).result(timeout=20)
    return store


def test_the_comparison_of_a_small_store_by_hand(
    filled: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two rows: tx-1 and tx-2 share an event time, so the page boundary falls
    # inside a tie and the keyset must continue by transaction id.
    monkeypatch.setattr(challenger_sql, "_CHUNK", 2)
    period = ChallengerPeriod.model_validate({"version": "v2"})

    reading = read_comparison(filled, period, as_of=AS_OF)

    result = reading.comparison
    assert reading.versions == {"v2": 3, "v3": 1}
    assert (result.decisions, result.shadowed, result.in_span) == (6, 3, 4)
    assert (result.labelled, result.measured, result.measured_fraud) == (2, 3, 1)
    assert (result.taken_legitimate, result.within_delay, result.declined_unlabelled) == (1, 0, 0)
    assert result.overridden == 1
    assert {k: n for k, n in result.agreement.items() if n} == {
        ("decline", "approve"): 1,
        ("review", "decline"): 1,
        ("approve", "approve"): 1,
    }
    # Champion ranks tx-0 .95 (fraud) first: AP 1; v2 ranks tx-1 .7 above it: AP 1/2.
    assert (result.champion.ap, result.challenger.ap) == (pytest.approx(1.0), pytest.approx(0.5))
    assert result.champion.quality.precision == 1.0 and result.champion.quality.recall == 1.0
    assert result.challenger.quality.precision == 0.0 and result.challenger.quality.recall == 0.0
    assert result.champion.declines == 1 and result.challenger.declines == 1
    # Both are flips; tx-0 is 0.75 apart, tx-1 0.1. Full records read for these only.
    assert [d.transaction_id for d in result.disagreements] == ["tx-0", "tx-1"]
    assert [d.record.transaction_id for d in result.disagreements if d.record] == ["tx-0", "tx-1"]
    assert all(d.challenger_explanation is not None for d in result.disagreements)


def test_the_busiest_version_by_default_and_a_period_narrows_every_count(
    filled: AuditStore,
) -> None:
    period = ChallengerPeriod.model_validate(
        {"from": BASE + timedelta(minutes=1), "to": BASE + timedelta(minutes=4)}
    )

    reading = read_comparison(filled, period, as_of=AS_OF)

    result = reading.comparison
    assert reading.versions == {"v2": 2, "v3": 1}
    assert result.version == "v2"  # two rows against one
    assert (result.decisions, result.shadowed, result.in_span) == (4, 2, 3)


def test_within_the_label_delay_silence_is_left_out(filled: AuditStore) -> None:
    period = ChallengerPeriod.model_validate({"version": "v2", "label_delay_days": 60})

    result = read_comparison(filled, period, as_of=AS_OF).comparison

    assert (result.measured, result.within_delay, result.taken_legitimate) == (2, 1, 0)
    assert result.label_delay_days == 60
