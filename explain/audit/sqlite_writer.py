"""The SQLite audit store's one writer: group commit on its own thread.

Submissions are groups (the decisions of one micro-batch, one label, a flush marker) and
each group has one future, settled once its rows are durable: one thread hand-off per
group, not per decision. The writer gathers whatever arrives within ``commit_window_ms``
of the first group (at most ``max_batch`` rows), and writes the lot in one transaction
with one sync.

Idempotency costs one query per commit, not one per decision: inside the transaction, a
single ``SELECT … WHERE transaction_id IN (…)`` finds the ids already stored; those rows
are skipped (their futures say False: the stored decision stands) and the rest go in
with one ``executemany``. The write lock is held throughout, so nothing can slip in
between. The schema's triggers still refuse any conflicting insert.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from explain.audit import compact
from explain.audit.store import AuditStoreError, Outcome
from explain.decision import Decision
from explain.records import LabelRecord
from explain.schema import ExplanationSchema
from features.schema import datetime_to_epoch_ms

WRITER_THREAD_NAME = "riskscore-audit-writer"

_INSERT_DECISION = """
INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,
    decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,
    record_json, fallback, record, latency_us, reason_positions, fallback_reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)
"""
_INSERT_LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json)
VALUES (?, ?, ?, ?, ?)
"""
# SQLite's default limit on bound parameters per statement is far above this.
_IN_CHUNK = 500


@dataclass(frozen=True)
class WriterStats:
    """What the writer has done: ``records`` counts rows in committed batches, including
    duplicates that resolved False; each commit is one sync."""

    commits: int = 0
    records: int = 0
    failed_batches: int = 0


@dataclass(slots=True)
class _Group:
    decisions: Sequence[Decision]
    labels: Sequence[LabelRecord]
    future: Future[Any]
    single: bool = False  # the future gives the one item's outcome, not a list

    @property
    def size(self) -> int:
        return len(self.decisions) + len(self.labels)


def _decision_row(decision: Decision, schema_id: int) -> tuple[Any, ...]:
    tx = decision.transaction
    return (
        tx.transaction_id,
        decision.request_sha256,
        tx.epoch_ms,
        tx.local_epoch_ms,
        datetime_to_epoch_ms(decision.decided_at),
        tx.customer_id,
        tx.terminal_id,
        tx.amount,
        decision.action,
        decision.stage,
        decision.score,
        decision.model_version,
        int(decision.fallback),
        compact.encode(decision, schema_id),
        round(decision.latency_ms * 1000),
        ",".join(map(str, decision.reasons.indices)),
        decision.fallback_reason,
    )


def _label_row(label: LabelRecord) -> tuple[Any, ...]:
    received_ms = datetime_to_epoch_ms(label.received_at)
    labelled = label.labelled_at
    return (
        label.transaction_id,
        int(label.is_fraud),
        received_ms if labelled is None else datetime_to_epoch_ms(labelled),
        received_ms,
        label.model_dump_json(),
    )


class GroupCommitWriter:
    """Owns the write connection and the writer thread (see the module doc)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        window_s: float,
        max_batch: int,
        on_schema: Callable[[int, ExplanationSchema], None],
    ) -> None:
        self._conn = conn
        self._path = path
        self._window_s = window_s
        self._max_batch = max_batch
        self._on_schema = on_schema  # told of each schema id known to be durable
        self._schema_ids: dict[str, int] = {}
        self._queue: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
        # Guards _closed together with putting on the queue: nothing can be queued behind
        # the stop marker, so no future is ever left pending.
        self._lock = threading.Lock()
        self.closed = False
        self.closed_reason = "closed"
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name=WRITER_THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -- submitting (any thread) ---------------------------------------------------------

    def put(
        self,
        decisions: Sequence[Decision] = (),
        labels: Sequence[LabelRecord] = (),
        single: bool = False,
    ) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self.closed:
                raise AuditStoreError(f"audit store {self._path} is {self.closed_reason}")
            self._queue.put(_Group(decisions, labels, future, single))
        return future

    def stop(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._queue.put(None)

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch, stop = self._collect(first)
                try:
                    self._write(batch)
                except Exception as exc:  # a bug in _write must not leave its callers waiting
                    for group in batch:
                        with contextlib.suppress(InvalidStateError):
                            _fail(group, AuditStoreError(f"audit write failed: {exc}"))
        finally:
            # After a normal stop the queue is already empty. If the loop broke instead,
            # refuse new work and fail what is queued rather than let anyone wait forever.
            with self._lock:
                if not self.closed:
                    self.closed, self.closed_reason = True, "closed: its writer stopped"
                leftovers: list[_Group] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        queued = self._queue.get_nowait()
                        if queued is not None:
                            leftovers.append(queued)
            for group in leftovers:
                group.future.set_running_or_notify_cancel()
                _fail(group, AuditStoreError("audit writer stopped"))
            self._conn.close()

    def _collect(self, first: _Group) -> tuple[list[_Group], bool]:
        batch = [first]
        size = first.size
        deadline = time.monotonic() + self._window_s
        while size < self._max_batch and first.size:
            remaining = deadline - time.monotonic()
            try:
                # Past the window, still take what is already waiting: that costs no latency.
                group = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if group is None:
                return batch, True
            batch.append(group)
            size += group.size
            if not group.size:  # someone is waiting on a flush: do not make them wait
                break
        return batch, False

    def _write(self, batch: list[_Group]) -> None:
        for group in batch:
            # Once running, a future can no longer be cancelled under us; a caller who
            # cancelled before still gets the record written (a decision taken stands).
            group.future.set_running_or_notify_cancel()
        outcomes: dict[int, list[Outcome]] = {id(g): [] for g in batch}
        try:
            self._commit(batch, outcomes)
        except sqlite3.IntegrityError:
            # One row breaking a constraint must not sink the others it was grouped with:
            # write them one by one, so only the bad one fails.
            for group in batch:
                outcomes[id(group)] = []
                for decision in group.decisions:
                    alone = _Group([decision], [], group.future)
                    result: dict[int, list[Outcome]] = {id(alone): []}
                    self._commit_or_fail([alone], result)
                    outcomes[id(group)] += result[id(alone)]
                for label in group.labels:
                    alone = _Group([], [label], group.future)
                    result = {id(alone): []}
                    self._commit_or_fail([alone], result)
                    outcomes[id(group)] += result[id(alone)]
        except Exception as exc:
            error = AuditStoreError(
                f"audit batch of {sum(g.size for g in batch)} records not written to "
                f"{self._path}: {exc}"
            )
            error.__cause__ = exc
            for group in batch:
                outcomes[id(group)] = [error] * group.size
        for group in batch:
            _settle(group, outcomes[id(group)])

    def _commit_or_fail(self, batch: list[_Group], outcomes: dict[int, list[Outcome]]) -> None:
        try:
            self._commit(batch, outcomes)
        except Exception as exc:
            error = AuditStoreError(f"audit record not written to {self._path}: {exc}")
            error.__cause__ = exc
            for group in batch:
                outcomes[id(group)] = [error] * group.size

    def _commit(self, batch: list[_Group], outcomes: dict[int, list[Outcome]]) -> None:
        """Write the batch in one transaction; fills ``outcomes`` (per group, in order).

        Raises (after rollback) on failure; nothing of the batch is then written.
        """
        conn = self._conn
        new_schemas: dict[str, tuple[int, ExplanationSchema]] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            decisions = [d for g in batch for d in g.decisions]
            stored = self._stored_ids([d.transaction_id for d in decisions])
            rows = []
            written: dict[int, list[Outcome]] = {id(g): [] for g in batch}
            for group in batch:
                for decision in group.decisions:
                    tid = decision.transaction_id
                    if tid in stored:
                        written[id(group)].append(False)
                        continue
                    try:
                        schema_id = self._schema_id(decision.schema, new_schemas)
                        rows.append(_decision_row(decision, schema_id))
                    except sqlite3.Error:
                        raise
                    except Exception as exc:  # one unencodable record must not sink its batch
                        written[id(group)].append(
                            AuditStoreError(f"cannot encode decision {tid!r}: {exc}")
                        )
                        continue
                    stored.add(tid)  # a second copy in this batch finds the first
                    written[id(group)].append(True)
                for _ in group.labels:
                    written[id(group)].append(True)
            if rows:
                conn.executemany(_INSERT_DECISION, rows)
            labels = [_label_row(label) for g in batch for label in g.labels]
            if labels:
                conn.executemany(_INSERT_LABEL, labels)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self.stats = replace(self.stats, failed_batches=self.stats.failed_batches + 1)
            raise
        for key, (schema_id, schema) in new_schemas.items():
            self._schema_ids[key] = schema_id
            self._on_schema(schema_id, schema)
        stats = self.stats
        self.stats = replace(
            stats, commits=stats.commits + 1, records=stats.records + sum(g.size for g in batch)
        )
        outcomes.update(written)

    def _stored_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._conn.execute(
                    f"SELECT transaction_id FROM decisions WHERE transaction_id IN ({marks})",
                    chunk,
                )
            )
        return found

    def _schema_id(
        self, schema: ExplanationSchema, new: dict[str, tuple[int, ExplanationSchema]]
    ) -> int:
        """The schema's row id, inserting it (in the open transaction) the first time."""
        known = self._schema_ids.get(schema.key)
        if known is not None:
            return known
        if schema.key in new:
            return new[schema.key][0]
        row = self._conn.execute(
            "SELECT id FROM explanation_schemas WHERE key = ?", (schema.key,)
        ).fetchone()
        if row is None:
            cursor = self._conn.execute(
                "INSERT INTO explanation_schemas (key, schema_json) VALUES (?, ?)",
                (schema.key, schema.to_json()),
            )
            schema_id = int(cursor.lastrowid or 0)
        else:
            schema_id = int(row[0])
        new[schema.key] = (schema_id, schema)
        return schema_id


def _settle(group: _Group, outcomes: list[Outcome]) -> None:
    # A future its caller cancelled before the writer claimed it is skipped, but its rows
    # were still written: cancelling a wait does not withdraw a decision already taken.
    future = group.future
    if future.cancelled():
        return
    if group.single:
        if not group.size:
            future.set_result(None)  # a flush
            return
        (outcome,) = outcomes
        if isinstance(outcome, AuditStoreError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome if group.decisions else None)
        return
    future.set_result(outcomes)


def _fail(group: _Group, error: AuditStoreError) -> None:
    if group.future.cancelled():
        return
    if group.single:
        group.future.set_exception(error)
    else:
        group.future.set_result([error] * group.size)
