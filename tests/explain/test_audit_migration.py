"""An audit file written by version 1 stays readable, and whole, after the move to version 2.

Version 1 kept each decision as its JSON record (``record_json``); version 2 writes compact
records (``record``, with ``fallback`` as a column) and keeps the explanation schema once.
A file from the field holds old rows forever, so every read path must give both forms as
the same records: here a version-1 file is built as the version-1 writer built it, from
real decisions of the shipped model (some fallen back, some decided by the second stage),
opened (which migrates it), and extended with new decisions; then every read, filter and
page is checked over the mix, the immutability triggers and the one-form CHECK are tried
with raw SQL, and reopening is shown to change nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from explain.audit.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import DecisionQuery, PageKey, RebuildEvent, StoredVector
from explain.decision import Decision, to_record
from explain.records import DecisionRecord, LabelRecord
from features.data import frame_from_pandas
from features.schema import Transaction, datetime_to_epoch_ms
from features.simulator import SimulationConfig, simulate
from models.artifact_paths import default_artifact_dir
from models.fast import ModelSlot
from service.app import build_cascade
from service.scorer import Scored, Scorer
from service.settings import Settings
from tests.pinned_stage import pinned_stage

# How version 1 wrote a decision and a label (its writer, verbatim but for the names).
V1_INSERT_DECISION = """
INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,
    decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,
    record_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
V1_INSERT_LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json)
VALUES (?, ?, ?, ?, ?)
"""
LABELS_RECEIVED = datetime(2025, 2, 1, tzinfo=UTC)


def v1_decision_row(record: DecisionRecord) -> tuple[object, ...]:
    tx = record.transaction
    return (
        tx.transaction_id,
        record.request_sha256,
        tx.epoch_ms,
        tx.local_epoch_ms,
        datetime_to_epoch_ms(record.decided_at),
        tx.customer_id,
        tx.terminal_id,
        tx.amount,
        record.action,
        record.stage,
        record.score,
        record.model_version,
        record.model_dump_json(),
    )


def v1_label_row(label: LabelRecord) -> tuple[object, ...]:
    received = datetime_to_epoch_ms(label.received_at)
    return (label.transaction_id, int(label.is_fraud), received, received, label.model_dump_json())


def label(transaction_id: str, is_fraud: bool, minutes: int) -> LabelRecord:
    return LabelRecord(
        transaction_id=transaction_id,
        is_fraud=is_fraud,
        received_at=LABELS_RECEIVED + timedelta(minutes=minutes),
    )


# ---------------------------------------------------------------- real decisions


async def _decide(scorer: Scorer, txs: list[Transaction]) -> list[Decision]:
    # Singles and batches; every third with no time for the second stage (a fallback
    # when its fast score is in the band), the others with plenty.
    scorer.warm_start(from_store=True)
    decisions: list[Decision] = []
    done = 0
    for n, size in enumerate(itertools.cycle((1, 9, 1, 20))):
        if done >= len(txs):
            break
        chunk = txs[done : done + size]
        done += len(chunk)
        budget = 0.001 if n % 3 == 0 else None
        for result in await scorer.score_batch(chunk, budget_ms=budget):
            assert isinstance(result, Scored)
            decisions.append(result.decision)
    await scorer.drain(30.0)
    return decisions


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> list[Decision]:
    """300 decisions of the shipped fast model and second stage, in event-time order."""
    config = SimulationConfig(customers=25, terminals=50, days=12, start=date(2025, 1, 1), seed=5)
    frame = frame_from_pandas(simulate(config), source="simulated")
    txs = [Transaction.model_validate(p) for p in itertools.islice(frame.payloads(), 300)]
    scratch = tmp_path_factory.mktemp("scratch")
    models = ModelSlot()
    models.swap(default_artifact_dir())
    # The pinned band: a wide one, so both sides hold second-stage decisions and fallbacks.
    stage = pinned_stage(scratch / "pinned-sequence-stage")
    cascade = build_cascade(
        Settings.of(data_dir=scratch / "var", kafka="off", sequence_model_dir=stage),
        models.model.version,
    )
    with SQLiteAuditStore(scratch / "audit.sqlite3") as store:
        scorer = Scorer(models, store, cascade=cascade, budget_ms=5000.0)
        made = asyncio.run(_decide(scorer, txs))
    assert len(made) == len(txs)
    return made


# ---------------------------------------------------------------- the migrated file


@dataclass
class Migrated:
    store: SQLiteAuditStore
    path: Path
    old: list[DecisionRecord]  # written by "version 1", as JSON
    new: list[DecisionRecord]  # written after the migration, compact
    labels: list[LabelRecord]  # in the order received (old ones first)
    later: list[Decision]  # kept back, to be written after a reopen

    @property
    def records(self) -> list[DecisionRecord]:
        return self.old + self.new  # insertion (rowid) order, and event-time order


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def build_version_1(path: Path, records: list[DecisionRecord], labels: list[LabelRecord]) -> None:
    with raw(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("BEGIN")
        conn.executemany(V1_INSERT_DECISION, [v1_decision_row(r) for r in records])
        conn.executemany(V1_INSERT_LABEL, [v1_label_row(x) for x in labels])
        conn.execute("COMMIT")


@contextmanager
def migrated_file(path: Path, decisions: list[Decision]) -> Iterator[Migrated]:
    """A version-1 file with 150 decisions and some labels, opened (so migrated), then 100
    decisions and more labels written to it; 50 decisions are kept back."""
    old = [to_record(d) for d in decisions[:150]]
    new_decisions, later = decisions[150:250], decisions[250:]
    # Labels received before and after the upgrade; some of them overruled by later ones.
    old_labels = [label(r.transaction_id, i % 2 == 0, i) for i, r in enumerate(old[::10])]
    new_labels = [label(r.transaction_id, True, 100 + i) for i, r in enumerate(old[::20])]
    new_labels += [
        label(d.transaction_id, i % 3 == 0, 200 + i) for i, d in enumerate(new_decisions[::7])
    ]
    build_version_1(path, old, old_labels)
    with SQLiteAuditStore(path) as store:
        outcomes = store.submit_many(new_decisions).result(timeout=30)
        assert outcomes == [True] * len(new_decisions)
        for written in [store.submit_label(x) for x in new_labels]:
            written.result(timeout=30)
        new = [to_record(d) for d in new_decisions]
        yield Migrated(store, path, old, new, old_labels + new_labels, later)


@pytest.fixture(scope="module")
def migrated(
    tmp_path_factory: pytest.TempPathFactory, decisions: list[Decision]
) -> Iterator[Migrated]:
    # Shared by the tests that only read, or try writes that must be refused.
    path = tmp_path_factory.mktemp("migrated") / "audit.sqlite3"
    with migrated_file(path, decisions) as opened:
        yield opened


def test_the_file_is_migrated_and_both_forms_are_in_it(migrated: Migrated) -> None:
    with raw(migrated.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (7,)
        forms = conn.execute(
            "SELECT record_json <> '', record IS NOT NULL, fallback IS NOT NULL, count(*)"
            " FROM decisions GROUP BY 1, 2, 3 ORDER BY 1"
        ).fetchall()
    # Old rows untouched (JSON, no fallback column value); new rows compact.
    assert forms == [(0, 1, 1, len(migrated.new)), (1, 0, 0, len(migrated.old))]
    # The mix is worth testing: fallbacks and second-stage decisions on both sides.
    for side in (migrated.old, migrated.new):
        assert {r.fallback for r in side} == {True, False}
        assert {r.stage for r in side} == {"fast", "sequence"}


def test_old_and_new_rows_read_back_as_written(migrated: Migrated) -> None:
    store, records = migrated.store, migrated.records
    by_id = {r.transaction_id: r for r in records}
    assert store.get_many([*by_id, "unknown"]) == by_id
    for record in (records[0], records[149], records[150], records[-1]):
        assert store.get(record.transaction_id) == record
    # Oldest event first, ties in the order written.
    everything = store.query(DecisionQuery(limit=10_000))
    assert everything == sorted(records, key=lambda r: r.transaction.epoch_ms)
    # As text too: equality of records would let a timestamp's offset change.
    assert [r.model_dump_json() for r in everything] == [
        r.model_dump_json() for r in sorted(records, key=lambda r: r.transaction.epoch_ms)
    ]


@pytest.mark.parametrize("fallback", [True, False])
def test_the_fallback_filter_covers_both_forms(migrated: Migrated, fallback: bool) -> None:
    store = migrated.store
    found = store.query(DecisionQuery(fallback=fallback, limit=10_000))
    expected = sorted(
        (r for r in migrated.records if r.fallback == fallback),
        key=lambda r: r.transaction.epoch_ms,
    )
    assert found == expected
    old_ids = {r.transaction_id for r in migrated.old}
    assert any(r.transaction_id in old_ids for r in found)
    assert any(r.transaction_id not in old_ids for r in found)
    # With other filters beside it.
    for stage in ("fast", "sequence"):
        query = DecisionQuery(fallback=fallback, stage=stage, limit=10_000)
        assert store.query(query) == [r for r in expected if r.stage == stage]


@pytest.mark.parametrize("fallback", [None, True, False])
def test_pages_with_keys_walk_both_forms_newest_first(
    migrated: Migrated, fallback: bool | None
) -> None:
    store = migrated.store
    expected = sorted(
        (r for r in migrated.records if fallback is None or r.fallback == fallback),
        key=lambda r: (r.transaction.epoch_ms, r.transaction_id),
        reverse=True,
    )
    pages: list[list[DecisionRecord]] = []
    after = None
    while True:
        page = store.page(DecisionQuery(fallback=fallback, limit=7), after)
        if not page:
            break
        pages.append(page)
        last = page[-1]
        after = PageKey(last.transaction.epoch_ms, last.transaction_id)
    assert [r for page in pages for r in page] == expected
    assert all(len(page) == 7 for page in pages[:-1])


def test_rebuild_events_cover_both_forms(migrated: Migrated) -> None:
    records = migrated.records
    since = records[100].transaction.epoch_ms  # inside the old rows
    expected = [
        RebuildEvent(
            r.transaction_id,
            r.transaction.customer_id,
            r.transaction.terminal_id,
            r.transaction.epoch_ms,
            r.transaction.local_epoch_ms,
            r.transaction.amount,
        )
        for r in sorted(records, key=lambda r: r.transaction.epoch_ms)
        if r.transaction.epoch_ms >= since
    ]
    assert list(migrated.store.rebuild_events(since)) == expected
    assert any(e.transaction_id == records[120].transaction_id for e in expected)


def _vector(record: DecisionRecord) -> StoredVector:
    return StoredVector(
        record.transaction_id,
        record.transaction.customer_id,
        record.transaction.epoch_ms,
        record.transaction.amount,
        {a["feature"]: a["value"] for a in record.explanation.attributions},
    )


def test_feature_vectors_cover_both_forms(migrated: Migrated) -> None:
    store, records = migrated.store, migrated.records
    since, per_customer = records[100].transaction.epoch_ms, 3
    # Each customer's latest three since ``since`` (ties: the later written), in event order.
    in_order = sorted(
        (i for i, r in enumerate(records) if r.transaction.epoch_ms >= since),
        key=lambda i: (records[i].transaction.epoch_ms, i),
    )
    latest: dict[str, list[int]] = {}
    for i in reversed(in_order):
        kept = latest.setdefault(records[i].transaction.customer_id, [])
        if len(kept) < per_customer:
            kept.append(i)
    chosen = sorted(
        (i for kept in latest.values() for i in kept),
        key=lambda i: (records[i].transaction.epoch_ms, i),
    )
    recent = list(store.recent_feature_vectors(since, per_customer))
    assert recent == [_vector(records[i]) for i in chosen]
    assert {v.transaction_id for v in recent} & {r.transaction_id for r in migrated.old}
    assert {v.transaction_id for v in recent} & {r.transaction_id for r in migrated.new}
    wanted = [records[0], records[149], records[150], records[-1]]
    found = store.vectors_of([r.transaction_id for r in wanted] + ["unknown"])
    assert found == {r.transaction_id: _vector(r) for r in wanted}


def test_labels_cover_both_forms(migrated: Migrated) -> None:
    store, records = migrated.store, migrated.records
    latest: dict[str, bool] = {}
    for x in migrated.labels:  # received in this order: the last one stands
        latest[x.transaction_id] = x.is_fraud
    position = {r.transaction_id: i for i, r in enumerate(records)}
    since = records[40].transaction.epoch_ms
    expected = sorted(
        (
            (tid, is_fraud)
            for tid, is_fraud in latest.items()
            if records[position[tid]].transaction.epoch_ms >= since
        ),
        key=lambda item: (records[position[item[0]]].transaction.epoch_ms, position[item[0]]),
    )
    assert list(store.latest_labels(since)) == expected
    assert store.latest_labels_of(list(latest)) == latest
    for tid in latest:
        assert store.labels(tid) == [x for x in migrated.labels if x.transaction_id == tid]


IMMUTABLE = [
    "UPDATE decisions SET score = 0.5 WHERE transaction_id = :old",
    "UPDATE decisions SET fallback = 1 WHERE transaction_id = :old",
    "UPDATE decisions SET record_json = '' WHERE transaction_id = :old",
    "UPDATE decisions SET score = 0.5 WHERE transaction_id = :new",
    "UPDATE decisions SET record = x'00' WHERE transaction_id = :new",
    "DELETE FROM decisions WHERE transaction_id = :old",
    "DELETE FROM decisions WHERE transaction_id = :new",
    "INSERT OR REPLACE INTO decisions SELECT * FROM decisions WHERE transaction_id = :new",
    "UPDATE explanation_schemas SET schema_json = '{}'",
    "DELETE FROM explanation_schemas",
    "INSERT INTO explanation_schemas (key, schema_json) SELECT key, '{}' FROM explanation_schemas",
    "INSERT OR REPLACE INTO explanation_schemas SELECT * FROM explanation_schemas",
]


@pytest.mark.parametrize("statement", IMMUTABLE)
def test_history_stays_immutable(migrated: Migrated, statement: str) -> None:
    ids = {"old": migrated.old[0].transaction_id, "new": migrated.new[0].transaction_id}
    with raw(migrated.path) as conn, pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute(statement, ids)
    store = migrated.store
    assert store.get(ids["old"]) == migrated.old[0]
    assert store.get(ids["new"]) == migrated.new[0]


# A new row copied from an existing compact one, with its record columns set as given.
ONE_FORM = """
INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,
    decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,
    record_json, fallback, record)
SELECT 'forged', request_sha256, event_time_ms, local_time_ms, decided_at_ms, customer_id,
    terminal_id, amount, action, stage, score, model_version, :record_json, :fallback, {record}
FROM decisions WHERE transaction_id = :new
"""


@pytest.mark.parametrize(
    ("record_json", "fallback", "record"),
    [
        ("{}", 0, "record"),  # both forms
        ("", 0, "NULL"),  # neither
        ("", None, "NULL"),  # neither, and no fallback
        ("", None, "record"),  # compact without its fallback column
    ],
    ids=["both", "neither", "neither-no-fallback", "compact-without-fallback"],
)
def test_a_row_holds_exactly_one_form(
    migrated: Migrated, record_json: str, fallback: int | None, record: str
) -> None:
    params = {
        "record_json": record_json,
        "fallback": fallback,
        "new": migrated.new[0].transaction_id,
    }
    with raw(migrated.path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute(ONE_FORM.format(record=record), params)
        assert conn.execute(
            "SELECT count(*) FROM decisions WHERE transaction_id = 'forged'"
        ).fetchone() == (0,)


def test_reopening_is_idempotent(tmp_path: Path, decisions: list[Decision]) -> None:
    with migrated_file(tmp_path / "audit.sqlite3", decisions) as migrated:
        pass  # closed: what a restarted service finds
    with raw(migrated.path) as conn:
        schemas = conn.execute("SELECT id, key, schema_json FROM explanation_schemas").fetchall()
    assert len(schemas) == 1
    for _ in range(2):
        with SQLiteAuditStore(migrated.path) as store:
            assert store.get_many([r.transaction_id for r in migrated.records]) == {
                r.transaction_id: r for r in migrated.records
            }
        with raw(migrated.path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    # Decisions written after a reopen refer to the schema already stored, not a copy.
    with SQLiteAuditStore(migrated.path) as store:
        assert store.submit_many(migrated.later).result(timeout=30) == [True] * len(migrated.later)
        for decision in migrated.later:
            assert store.get(decision.transaction_id) == to_record(decision)
        assert len(store.query(DecisionQuery(limit=10_000))) == 300
    with raw(migrated.path) as conn:
        again = conn.execute("SELECT id, key, schema_json FROM explanation_schemas").fetchall()
        assert again == schemas
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
