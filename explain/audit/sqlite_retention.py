"""Retention and backup of the SQLite audit file.

Retention is a compaction: in ONE transaction (``BEGIN IMMEDIATE``: the file's write lock,
so the service's writer waits, up to its busy timeout, and readers keep their snapshot)
the triggers refusing DELETE are dropped, the decisions with event time before the
cutoff, the labels of those decisions and the challenger rows of those decisions (by the
decision's event time they carry) are deleted, the deletion is recorded in
``retention_log``, and the triggers are created again. No other connection ever sees the
file without its triggers, and a crash part-way leaves the file as it was. This is the one
way rows leave the file. The freed pages are reused by later decisions; the file does not
shrink (``VACUUM`` it while the service is stopped to give the space back).

Backup uses SQLite's online backup API: a consistent copy of the whole file taken page by
page while the service keeps writing (a step that meets a change starts again from it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from explain.audit.sqlite_schema import PRUNED
from explain.audit.store import Pruned


def prune_before(conn: sqlite3.Connection, cutoff_ms: int) -> Pruned:
    """Delete decisions with event time before ``cutoff_ms`` and their labels (see the
    module doc); ``conn`` is in autocommit mode (``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in PRUNED:
            conn.execute(f"DROP TRIGGER {table}_refuse_delete")
        conn.execute("DELETE FROM challenger_scores WHERE event_time_ms < ?", (cutoff_ms,))
        labels = conn.execute(
            "DELETE FROM labels WHERE transaction_id IN"
            " (SELECT transaction_id FROM decisions WHERE event_time_ms < ?)",
            (cutoff_ms,),
        ).rowcount
        decisions = conn.execute(
            "DELETE FROM decisions WHERE event_time_ms < ?", (cutoff_ms,)
        ).rowcount
        conn.execute(
            "INSERT INTO retention_log (pruned_at_ms, cutoff_ms, decisions, labels)"
            " VALUES (?, ?, ?, ?)",
            (int(time.time() * 1000), cutoff_ms, decisions, labels),
        )
        for statement in PRUNED.values():
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Pruned(cutoff_ms, decisions, labels)


def backup_to(
    source: sqlite3.Connection, target: Path, progress: Callable[[int, int], None]
) -> None:
    """Copy the database on ``source`` to a new file ``target``, 256 pages a step;
    ``progress(pages_done, pages_total)`` after each step."""
    destination = sqlite3.connect(target)
    try:

        def step(status: int, remaining: int, total: int) -> None:
            progress(total - remaining, total)

        source.backup(destination, pages=256, progress=step)
    finally:
        destination.close()
