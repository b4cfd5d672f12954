"""``OnlineFeatureEngine.update_many`` is exactly ``update_raw`` called once per row.

One compiled call applies a whole batch; these tests hold it to the sequential engine on a
simulated stream (batches of every size the code treats differently, late events, local
offsets, labels fed back between batches), across pool growth in the middle of a batch,
for ids refused as duplicates, for a batch that cannot be converted (nothing may change),
and for what ``seen()`` and ``dedupe_floor_ms`` promise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from features import online
from features.data import frame_from_pandas
from features.definitions import DEFAULT_FEATURES, MS_PER_DAY, Aggregation
from features.online import _SWEEP_EVERY, LabelOutcome, OnlineFeatureEngine
from features.simulator import SimulationConfig, simulate

Row = tuple[str, str, str, int, int, float]

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
# Batch sizes the engine treats differently: one row takes the single-row kernel, the
# others one compiled call; 500 is a whole micro-batch of the service.
BATCH_SIZES = (1, 2, 7, 64, 500)
# How long an applied id is remembered: the longest labelled window plus its label delay.
LABEL_HORIZON_MS = max(
    d.window_ms + int(d.delay.total_seconds() * 1000)
    for d in DEFAULT_FEATURES
    if d.aggregation is Aggregation.FRAUD_RATE
)
NAMES = [d.name for d in DEFAULT_FEATURES]


def col(name: str) -> int:
    return NAMES.index(name)


def columns(rows: Sequence[Row]) -> tuple[list[Any], ...]:
    """Rows as update_many's six parallel sequences."""
    return tuple(list(c) for c in zip(*rows, strict=True)) if rows else ([],) * 6


def sequential(engine: OnlineFeatureEngine, rows: Sequence[Row]) -> np.ndarray:
    return np.array([engine.update_raw(*row) for row in rows]).reshape(-1, len(NAMES))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


def without_pool(stats: dict[str, int]) -> dict[str, int]:
    # The pool's size depends on when it was compacted, which batching changes; the
    # entities, their retained events and the label references must not.
    return {k: v for k, v in stats.items() if k != "pool_cells"}


@pytest.fixture(scope="module")
def stream() -> tuple[list[Row], list[bool]]:
    """~4,400 simulated payments over 90 days (30 customers, 60 terminals) and their labels.

    Long enough that the engines' periodic sweep (every 4,096 updates) runs once. Every
    third customer pays in +02:00 and every third in -05:00, so the local clock differs
    from the absolute one, and every 101st payment is swapped with the one five places
    later, so late events (counted at their entity's latest time) are in the stream.
    """
    frame = frame_from_pandas(
        simulate(SimulationConfig(customers=30, terminals=60, days=90, seed=7)),
        source="simulated",
    )
    rows: list[Row] = []
    for tid, customer, terminal, t, _, amount in frame.iter_rows():
        shift = (2 * HOUR_MS, -5 * HOUR_MS, 0)[int(customer) % 3]
        rows.append((f"tx-{tid}", f"c-{customer}", f"t-{terminal}", t, t + shift, amount))
    labels = [bool(v) for v in frame.require_labels().tolist()]
    for i in range(0, len(rows) - 5, 101):
        rows[i], rows[i + 5] = rows[i + 5], rows[i]
        labels[i], labels[i + 5] = labels[i + 5], labels[i]
    assert len(rows) > _SWEEP_EVERY
    return rows, labels


def test_batches_of_every_size_equal_sequential_updates_with_labels_between(
    stream: tuple[list[Row], list[bool]],
) -> None:
    rows, labels = stream
    one_by_one, batched = OnlineFeatureEngine(), OnlineFeatureEngine()
    rng = np.random.default_rng(11)
    expected: list[np.ndarray] = []
    got: list[np.ndarray] = []
    outcomes: list[tuple[LabelOutcome, LabelOutcome]] = []
    done = 0
    for batch_number, size in enumerate(itertools.cycle(BATCH_SIZES)):
        if done >= len(rows):
            break
        batch = rows[done : done + size]
        done += len(batch)
        expected.append(sequential(one_by_one, batch))
        update = batched.update_many(*columns(batch))
        assert update.refused == []
        got.append(update.values)
        # Labels between batches, the same to both engines: true labels of earlier payments
        # of any age, some of them corrected (flipped), and now and then an unknown id.
        chosen = [(rows[j][0], labels[j] ^ (rng.random() < 0.2)) for j in rng.integers(0, done, 4)]
        if batch_number % 5 == 0:
            chosen.append((f"never-{batch_number}", True))
        for tid, is_fraud in chosen:
            outcomes.append(
                (one_by_one.record_label(tid, is_fraud), batched.record_label(tid, is_fraud))
            )
    want, have = np.concatenate(expected), np.concatenate(got)
    differing = np.flatnonzero(~np.all((want == have) | (np.isnan(want) & np.isnan(have)), axis=1))
    assert same(want, have), f"rows differ, first ones: {differing[:10].tolist()}"
    mismatched = [(i, a, b) for i, (a, b) in enumerate(outcomes) if a != b]
    assert not mismatched, mismatched[:10]
    # The comparison means something only if labels reached features and every outcome
    # occurred.
    assert {a for a, _ in outcomes} == set(LabelOutcome)
    assert want[:, col("TERMINAL_ID_RISK_30DAY_WINDOW")].max() > 0


def test_the_periodic_sweep_forgets_what_sequential_updates_forget(
    stream: tuple[list[Row], list[bool]],
) -> None:
    """After the same stream, every id gets the same label outcome and the same ``seen()``.

    The engines sweep idle entities and old label references every 4,096 updates, at the
    latest event time then; a batch spanning the 4,096th update must sweep at that time too,
    or it forgets ids (and entities) that the sequential engine still holds.
    """
    rows, _ = stream
    one_by_one, batched = OnlineFeatureEngine(), OnlineFeatureEngine()
    sequential(one_by_one, rows)
    done = 0
    for size in itertools.cycle(BATCH_SIZES):
        if done >= len(rows):
            break
        batched.update_many(*columns(rows[done : done + size]))
        done += size
    seen = [(r[0], one_by_one.seen(r[0]), batched.seen(r[0])) for r in rows]
    seen_diff = [s for s in seen if s[1] != s[2]]
    outcomes = [
        (r[0], r[3], one_by_one.record_label(r[0], True), batched.record_label(r[0], True))
        for r in rows
    ]
    outcome_diff = [o for o in outcomes if o[2] != o[3]]
    assert not outcome_diff, f"{len(outcome_diff)} label outcomes differ: {outcome_diff[:5]}"
    assert not seen_diff, f"{len(seen_diff)} ids differ in seen(): {seen_diff[:5]}"


def test_a_batch_across_the_sweep_keeps_labels_and_entities_as_sequential_updates_do() -> None:
    """The smallest case of the test above, with what it does to a late payment's features.

    4,095 updates, then two more: one at day 36, one at day 38. One by one, the 4,096th
    update sweeps at day 36, when the day-0 payment is still within its terminal's 37-day
    reach; as one batch, the sweep runs at day 38 and forgets it and its idle terminal.
    """
    day = MS_PER_DAY

    def history(engine: OnlineFeatureEngine) -> None:
        engine.update_raw("old", "c-old", "t-old", T0, T0, 10.0)
        for i in range(_SWEEP_EVERY - 2):
            t = T0 + 30 * day + i
            engine.update_raw(f"f{i}", f"c{i % 50}", f"t{i % 50}", t, t, 20.0)

    tail: list[Row] = [
        ("a", "c-a", "t-a", T0 + 36 * day, T0 + 36 * day, 5.0),
        ("b", "c-b", "t-b", T0 + 38 * day, T0 + 38 * day, 5.0),
    ]
    one_by_one, batched = OnlineFeatureEngine(), OnlineFeatureEngine()
    history(one_by_one)
    history(batched)
    sequential(one_by_one, tail)
    batched.update_many(*columns(tail))
    outcome = (one_by_one.record_label("old", True), batched.record_label("old", True))
    # A late payment at the old terminal, 8 days after "old": its 7-day risk window behind
    # the 7-day label delay holds "old" and its fraud label, if the engine still has them.
    late: Row = ("late", "c-late", "t-old", T0 + 8 * day, T0 + 8 * day, 5.0)
    risk = col("TERMINAL_ID_RISK_7DAY_WINDOW")
    late_risk = (one_by_one.update_raw(*late)[risk], batched.update_raw(*late)[risk])
    one_by_one_says = (outcome[0], late_risk[0])
    batched_says = (outcome[1], late_risk[1])
    assert batched_says == one_by_one_says, "(label outcome, late payment's 7-day risk)"


def test_pool_growth_in_the_middle_of_a_batch_equals_sequential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20,000 payments in 5.5 hours: 5,000 customers, 7,919 terminals, nearly every pair
    # new, and one customer paying every third time (a ring of thousands of events). That
    # is several times a small initial pool, so it must grow while one update_many applies
    # them (the engine's own initial pool is far larger: a small one makes growth happen).
    monkeypatch.setattr(online, "_INITIAL_POOL", 1 << 16)
    n = 20_000
    rows: list[Row] = []
    for i in range(n):
        customer = "whale" if i % 3 == 0 else f"c{i % 5000}"
        t = T0 + 1000 * i
        rows.append((f"tx{i}", customer, f"t{i % 7919}", t, t, 1.0 + (i % 97)))
    one_by_one, batched = OnlineFeatureEngine(), OnlineFeatureEngine()
    expected = sequential(one_by_one, rows)
    starts: list[int] = []
    kernel = online.k.update_many

    def spy(*args: Any) -> int:
        starts.append(int(args[5]))  # the row the kernel starts from
        result: int = kernel(*args)
        return result

    monkeypatch.setattr(online.k, "update_many", spy)
    update = batched.update_many(*columns(rows))
    # Called again from a row in the middle of a segment (segments end at the periodic
    # sweep): the pool grew while the batch was applied.
    assert any(0 < start < n for start in starts), starts
    assert batched.stats()["pool_cells"] > 1 << 16
    assert update.refused == []
    assert same(expected, update.values)
    assert without_pool(batched.stats()) == without_pool(one_by_one.stats())
    # And both engines carry on identically.
    after: list[Row] = [("next-1", "whale", "t1", T0 + n * 1000, T0 + n * 1000, 3.0)]
    assert same(sequential(one_by_one, after), batched.update_many(*columns(after)).values)


def test_an_id_twice_in_a_batch_is_refused_the_second_time() -> None:
    first: list[Row] = [
        ("a", "c1", "t1", T0, T0, 10.0),
        ("b", "c2", "t1", T0 + 1, T0 + 1, 20.0),
        ("a", "ghost", "t-ghost", T0 + 2, T0 + 2, 99.0),  # same id, other content
        ("c", "c1", "t2", T0 + 3, T0 + 3, 30.0),
    ]
    batched, reference = OnlineFeatureEngine(), OnlineFeatureEngine()
    update = batched.update_many(*columns(first))
    expected = sequential(reference, [first[0], first[1], first[3]])
    assert update.refused == [2]
    assert np.isnan(update.values[2]).all()
    assert same(update.values[[0, 1, 3]], expected)
    # The refused row made no entity ("ghost") and no state at all.
    assert batched.stats() == reference.stats()
    assert batched.seen("a")


@pytest.mark.parametrize("size", [1, 2, 5])
def test_an_id_applied_earlier_is_refused_and_changes_nothing(size: int) -> None:
    earlier: list[Row] = [("a", "c1", "t1", T0, T0, 10.0), ("b", "c2", "t1", T0 + 1, T0 + 1, 20.0)]
    # A batch of ``size`` rows whose middle one repeats "b" (with other content), then more.
    fresh = [(f"n{i}", "c1", "t2", T0 + 10 + i, T0 + 10 + i, 5.0 + i) for i in range(size - 1)]
    repeat: Row = ("b", "c-other", "t-other", T0 + 5, T0 + 5, 77.0)
    batch = [*fresh[: size // 2], repeat, *fresh[size // 2 :]]
    later: list[Row] = [("z", "c1", "t1", T0 + 100, T0 + 100, 40.0)]

    batched, reference = OnlineFeatureEngine(), OnlineFeatureEngine()
    batched.update_many(*columns(earlier))
    sequential(reference, earlier)
    update = batched.update_many(*columns(batch))
    expected = sequential(reference, fresh)  # the stream without the repeat
    assert update.refused == [size // 2]
    assert np.isnan(update.values[size // 2]).all()
    kept = [i for i in range(size) if i != size // 2]
    assert same(update.values[kept], expected)
    assert batched.stats() == reference.stats()
    assert same(batched.update_many(*columns(later)).values, sequential(reference, later))
    assert batched.record_label("b", True) == reference.record_label("b", True)


def test_a_batch_of_only_known_ids_is_all_refused() -> None:
    rows: list[Row] = [("a", "c1", "t1", T0, T0, 10.0), ("b", "c2", "t1", T0 + 1, T0 + 1, 20.0)]
    engine = OnlineFeatureEngine()
    engine.update_many(*columns(rows))
    before = engine.stats()
    update = engine.update_many(*columns(rows))
    assert update.refused == [0, 1]
    assert np.isnan(update.values).all()
    assert engine.stats() == before


def test_seen_never_forgets_an_id_newer_than_the_dedupe_floor(
    stream: tuple[list[Row], list[bool]],
) -> None:
    rows, _ = stream
    engine = OnlineFeatureEngine()
    applied: list[Row] = []
    latest = None
    forgotten = 0
    done = 0
    for size in itertools.cycle(BATCH_SIZES):
        if done >= len(rows):
            break
        batch = rows[done : done + size]
        done += len(batch)
        engine.update_many(*columns(batch))
        applied += batch
        batch_latest = max(r[3] for r in batch)
        latest = batch_latest if latest is None else max(latest, batch_latest)
        # The floor trails the latest event time (never a late one) by the label horizon.
        floor = engine.dedupe_floor_ms
        assert floor == latest - LABEL_HORIZON_MS
        if size == 500:
            # Forget everything the engine may forget now, as its own sweep would.
            engine.expire(latest)
        for row in applied:
            if row[3] > floor:
                assert engine.seen(row[0]), (row, floor)
            else:
                forgotten += not engine.seen(row[0])
        assert not engine.seen(f"never-{done}")
    # The guarantee was tested against a state that did forget older ids.
    assert forgotten > 0


def test_a_duplicate_refused_in_a_batch_is_still_seen_and_its_floor_holds() -> None:
    engine = OnlineFeatureEngine()
    engine.update_many(*columns([("a", "c", "t", T0, T0, 1.0), ("a", "c", "t", T0, T0, 1.0)]))
    assert engine.seen("a")
    # A late event does not pull the floor back.
    engine.update_raw("b", "c", "t", T0 + 10 * MS_PER_DAY, T0 + 10 * MS_PER_DAY, 1.0)
    floor = engine.dedupe_floor_ms
    engine.update_many(
        *columns([("c", "d", "u", T0, T0, 1.0), ("e", "d", "u", T0 + 1, T0 + 1, 1.0)])
    )
    assert engine.dedupe_floor_ms == floor
    engine.expire(T0 + 10 * MS_PER_DAY)
    assert all(engine.seen(i) for i in "abce")


def test_an_empty_batch_is_no_update_at_all() -> None:
    # Zero update_raw calls change nothing and return nothing; so must an empty batch.
    engine = OnlineFeatureEngine()
    engine.update_raw("a", "c", "t", T0, T0, 1.0)
    before = engine.stats()
    update = engine.update_many([], [], [], [], [], [])
    assert update.values.shape == (0, len(NAMES))
    assert update.refused == []
    assert engine.stats() == before


def _overflowing(prefix: list[Row]) -> list[Callable[[], list[Row]]]:
    # A batch that cannot be converted: event or local time outside int64, among good rows
    # that bring new entities (which must not be left behind).
    big = 2**63
    t = prefix[-1][3] + 1
    good: Row = ("x1", "newbie", "t-new", t, t, 5.0)
    return [
        lambda: [good, ("x2", "newbie2", "t-new2", big, big, 5.0)],
        lambda: [good, ("x2", "newbie2", "t-new2", t, big, 5.0)],
        lambda: [good, ("x2", "newbie2", "t-new2", -big - 1, t, 5.0)],
        lambda: [("x2", "newbie2", "t-new2", big, big, 5.0)],  # one row: the single-row path
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_batch_that_overflows_changes_nothing(
    stream: tuple[list[Row], list[bool]], case: int
) -> None:
    rows, _ = stream
    prefix, rest = rows[:1000], rows[1000:1600]
    bad = _overflowing(prefix)[case]()
    engine, reference = OnlineFeatureEngine(), OnlineFeatureEngine()
    engine.update_many(*columns(prefix))
    reference.update_many(*columns(prefix))
    before = engine.stats()
    with pytest.raises(OverflowError):
        engine.update_many(*columns(bad))
    assert engine.stats() == before  # no entity, event or label reference left behind
    assert not engine.seen("x1") and not engine.seen("x2")
    assert engine.dedupe_floor_ms == reference.dedupe_floor_ms
    # Later features equal those of a stream that never held the bad batch, and the ids
    # of the bad batch are still free.
    assert same(
        engine.update_many(*columns(rest)).values, reference.update_many(*columns(rest)).values
    )
    retry = [r for r in bad if abs(r[3]) < 2**62 and abs(r[4]) < 2**62]
    if retry:
        assert same(
            engine.update_many(*columns(retry)).values,
            reference.update_many(*columns(retry)).values,
        )
    assert engine.stats() == reference.stats()
