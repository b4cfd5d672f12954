"""Group commit on a writer thread, for any SQL audit store (SQLite, PostgreSQL).

Submissions are groups (the decisions of one micro-batch, one label, a flush marker, the
shadow challenger's rows of its batch: ``challenger_log.py``) and
each group has one future, settled once its rows are durable: one thread hand-off per
group, not per decision. The writer gathers whatever arrives within ``window_s`` of the
first group (at most ``max_batch`` rows), and writes the lot in one transaction with one
durable commit. The durable write therefore never runs on the event loop: the loop only
queues and later awaits the future.

Idempotency costs one query per commit, not one per decision: inside the transaction the
backend finds the ids already stored (:meth:`GroupCommitWriter._stored_ids`); those rows
are skipped (their futures say False: the stored decision stands) and the rest go in with
one batched insert. Each backend makes sure nothing can slip in between (SQLite: the write
lock; PostgreSQL: a lock per transaction id), and the databases' own rules still refuse a
conflicting insert.

A backend implements the few database steps: begin, look up stored ids, find or store an
explanation schema, insert rows, commit, roll back, close (and, if it needs to, prepare
what a batch needs in transactions of its own, such as PostgreSQL's new partitions).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

from explain.audit import compact
from explain.audit.challenger_log import ChallengerScore
from explain.audit.store import AuditStoreError, Outcome
from explain.decision import Decision
from explain.records import LabelRecord
from explain.schema import ExplanationSchema
from features.schema import datetime_to_epoch_ms

WRITER_THREAD_NAME = "riskscore-audit-writer"


@dataclass(frozen=True)
class WriterStats:
    """What the writer has done: ``records`` counts rows in committed batches, including
    duplicates that resolved False; each commit is one sync."""

    commits: int = 0
    records: int = 0
    failed_batches: int = 0


@dataclass(slots=True)
class Group:
    decisions: Sequence[Decision]
    labels: Sequence[LabelRecord]
    future: Future[Any]
    single: bool = False  # the future gives the one item's outcome, not a list
    challengers: Sequence[ChallengerScore] = ()

    @property
    def size(self) -> int:
        return len(self.decisions) + len(self.labels) + len(self.challengers)


def decision_row(decision: Decision, schema_id: int) -> tuple[Any, ...]:
    """A decision as the columns both stores insert, in the order of their INSERT."""
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
        # What period reports aggregate in SQL (sqlite_schema.py, version 4).
        round(decision.latency_ms * 1000),
        ",".join(map(str, decision.reasons.indices)),
        decision.fallback_reason,
        # The payment as received, when its amount was converted (schema version 5).
        *(tx.conversion or (None, None, None)),
    )


def label_row(label: LabelRecord) -> tuple[Any, ...]:
    received_ms = datetime_to_epoch_ms(label.received_at)
    labelled = label.labelled_at
    return (
        label.transaction_id,
        int(label.is_fraud),
        received_ms if labelled is None else datetime_to_epoch_ms(labelled),
        received_ms,
        label.model_dump_json(),
    )


class GroupCommitWriter(ABC):
    """The writer thread and its queue (see the module doc); subclasses own a connection."""

    # Errors of the database itself: they sink the whole transaction (never one record).
    database_errors: tuple[type[BaseException], ...] = ()
    # Errors of one row breaking a rule: the batch is retried row by row.
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        where: str,
        *,
        window_s: float,
        max_batch: int,
        on_schema: Callable[[int, ExplanationSchema], None],
    ) -> None:
        self._where = where  # names the store in errors (never a password)
        self._window_s = window_s
        self._max_batch = max_batch
        self._on_schema = on_schema  # told of each schema id known to be durable
        self._schema_ids: dict[str, int] = {}
        self._queue: queue.SimpleQueue[Group | None] = queue.SimpleQueue()
        # Guards _closed together with putting on the queue: nothing can be queued behind
        # the stop marker, so no future is ever left pending.
        self._lock = threading.Lock()
        self.closed = False
        self.closed_reason = "closed"
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name=WRITER_THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -- the database steps --------------------------------------------------------------

    def _prepare(self, batch: Sequence[Group]) -> None:  # noqa: B027 - optional step
        """Before the batch's transaction: anything it needs that commits on its own."""

    @abstractmethod
    def _begin(self) -> None:
        """Open the write transaction (taking whatever lock makes the id check hold)."""

    @abstractmethod
    def _stored_ids(self, ids: list[str]) -> set[str]:
        """Which of these ids are already stored (inside the open transaction)."""

    @abstractmethod
    def _find_or_insert_schema(self, schema: ExplanationSchema) -> int:
        """The schema's row id, inserting it in the open transaction the first time."""

    @abstractmethod
    def _insert(
        self,
        decisions: list[tuple[Any, ...]],
        labels: list[tuple[Any, ...]],
        challengers: list[tuple[Any, ...]],
    ) -> None:
        """Insert the rows (``decision_row``, ``label_row``, ``ChallengerScore.row``) in
        the open transaction; a challenger row already stored is skipped, not an error."""

    @abstractmethod
    def _commit_transaction(self) -> None:
        """Commit durably: returns only once the rows survive a crash."""

    @abstractmethod
    def _rollback(self) -> None:
        """Roll back the open transaction, if any; never raises."""

    @abstractmethod
    def _close_connection(self) -> None:
        """Release the write connection (on the writer thread, as it stops)."""

    # -- submitting (any thread) ---------------------------------------------------------

    def put(
        self,
        decisions: Sequence[Decision] = (),
        labels: Sequence[LabelRecord] = (),
        single: bool = False,
        challengers: Sequence[ChallengerScore] = (),
    ) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self.closed:
                raise AuditStoreError(f"audit store {self._where} is {self.closed_reason}")
            self._queue.put(Group(decisions, labels, future, single, challengers))
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
                leftovers: list[Group] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        queued = self._queue.get_nowait()
                        if queued is not None:
                            leftovers.append(queued)
            for group in leftovers:
                group.future.set_running_or_notify_cancel()
                _fail(group, AuditStoreError("audit writer stopped"))
            self._close_connection()

    def _collect(self, first: Group) -> tuple[list[Group], bool]:
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

    def _write(self, batch: list[Group]) -> None:
        for group in batch:
            # Once running, a future can no longer be cancelled under us; a caller who
            # cancelled before still gets the record written (a decision taken stands).
            group.future.set_running_or_notify_cancel()
        outcomes: dict[int, list[Outcome]] = {id(g): [] for g in batch}
        try:
            self._commit(batch, outcomes)
        except self.integrity_errors:
            # One row breaking a constraint must not sink the others it was grouped with:
            # write them one by one, so only the bad one fails.
            for group in batch:
                outcomes[id(group)] = []
                for decision in group.decisions:
                    alone = Group([decision], [], group.future)
                    result: dict[int, list[Outcome]] = {id(alone): []}
                    self._commit_or_fail([alone], result)
                    outcomes[id(group)] += result[id(alone)]
                for label in group.labels:
                    alone = Group([], [label], group.future)
                    result = {id(alone): []}
                    self._commit_or_fail([alone], result)
                    outcomes[id(group)] += result[id(alone)]
                for challenger in group.challengers:
                    alone = Group([], [], group.future, challengers=[challenger])
                    result = {id(alone): []}
                    self._commit_or_fail([alone], result)
                    outcomes[id(group)] += result[id(alone)]
        except Exception as exc:
            error = AuditStoreError(
                f"audit batch of {sum(g.size for g in batch)} records not written to "
                f"{self._where}: {exc}"
            )
            error.__cause__ = exc
            for group in batch:
                outcomes[id(group)] = [error] * group.size
        for group in batch:
            _settle(group, outcomes[id(group)])

    def _commit_or_fail(self, batch: list[Group], outcomes: dict[int, list[Outcome]]) -> None:
        try:
            self._commit(batch, outcomes)
        except Exception as exc:
            error = AuditStoreError(f"audit record not written to {self._where}: {exc}")
            error.__cause__ = exc
            for group in batch:
                outcomes[id(group)] = [error] * group.size

    def _commit(self, batch: list[Group], outcomes: dict[int, list[Outcome]]) -> None:
        """Write the batch in one transaction; fills ``outcomes`` (per group, in order).

        Raises (after rollback) on failure; nothing of the batch is then written.
        """
        new_schemas: dict[str, tuple[int, ExplanationSchema]] = {}
        try:
            self._prepare(batch)
            self._begin()
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
                        rows.append(decision_row(decision, schema_id))
                    except self.database_errors:
                        raise
                    except Exception as exc:  # one unencodable record must not sink its batch
                        written[id(group)].append(
                            AuditStoreError(f"cannot encode decision {tid!r}: {exc}")
                        )
                        continue
                    stored.add(tid)  # a second copy in this batch finds the first
                    written[id(group)].append(True)
                written[id(group)] += [True] * (len(group.labels) + len(group.challengers))
            self._insert(
                rows,
                [label_row(label) for g in batch for label in g.labels],
                [c.row() for g in batch for c in g.challengers],
            )
            self._commit_transaction()
        except BaseException:
            self._rollback()
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

    def _schema_id(
        self, schema: ExplanationSchema, new: dict[str, tuple[int, ExplanationSchema]]
    ) -> int:
        known = self._schema_ids.get(schema.key)
        if known is not None:
            return known
        if schema.key in new:
            return new[schema.key][0]
        schema_id = self._find_or_insert_schema(schema)
        new[schema.key] = (schema_id, schema)
        return schema_id


def _settle(group: Group, outcomes: list[Outcome]) -> None:
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


def _fail(group: Group, error: AuditStoreError) -> None:
    if group.future.cancelled():
        return
    if group.single:
        group.future.set_exception(error)
    else:
        group.future.set_result([error] * group.size)


class GroupCommitLog:
    """The writing half of a store's :class:`~explain.audit.store.DecisionLog`, through
    its :class:`GroupCommitWriter` (``self._writer``, set by the store), and the closing
    of the store: the writer, then the readers' connections (``self._readers``, added
    under ``self._lock``; each has a ``close()``)."""

    _writer: GroupCommitWriter
    _lock: threading.Lock
    _readers: list[Any]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> None:
        """Write everything already submitted, stop the writer and close every connection.
        Idempotent; a later call also waits for a writer an earlier one timed out on."""
        self._stop_writer(timeout)
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(Exception):
                conn.close()

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the writer's counters."""
        return self._writer.stats

    def submit(self, decision: Decision) -> Future[bool]:
        return self._writer.put([decision], single=True)

    def submit_many(self, decisions: Sequence[Decision]) -> Future[list[Outcome]]:
        return self._writer.put(list(decisions))

    def submit_label(self, label: LabelRecord) -> Future[None]:
        return self._writer.put(labels=[label], single=True)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted before this call is settled: durable, or its
        future holds the error. Raises :class:`AuditStoreError` on timeout."""
        self._refuse_on_writer("flush")
        try:
            marker = self._writer.put(single=True)
        except AuditStoreError:
            # Closing: the writer drains everything queued before it stops.
            self._writer.thread.join(timeout)
            if self._writer.thread.is_alive():
                raise AuditStoreError(f"flush did not complete within {timeout} s") from None
            return
        try:
            marker.result(timeout)
        except TimeoutError as exc:
            raise AuditStoreError(f"flush did not complete within {timeout} s") from exc

    def _stop_writer(self, timeout: float | None) -> None:
        """Write everything already submitted and stop the writer (see ``close``)."""
        self._refuse_on_writer("close")
        self._writer.stop()
        self._writer.thread.join(timeout)
        if self._writer.thread.is_alive():
            raise AuditStoreError(f"audit writer still writing after {timeout} s; close again")

    def _refuse_on_writer(self, what: str) -> None:
        # A future's done-callback runs on the writer; waiting there for the writer would hang.
        if threading.current_thread() is self._writer.thread:
            raise AuditStoreError(f"cannot {what} the audit store from its writer thread")
