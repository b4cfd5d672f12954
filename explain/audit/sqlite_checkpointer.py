"""WAL checkpoints of the SQLite audit store, off the commit path.

SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000 pages:
that commit copies the WAL's pages into the database file and syncs it before it
returns, and every decision waiting for that commit waits too. On a quiet machine
(`riskscore bench cascade`) answers decided in about 1 ms were answered 100-250 ms later,
one after another, in the phase whose writes were largest. So the writer's connection
turns automatic checkpoints off and this thread, on a connection of its own, runs a
PASSIVE checkpoint every ``interval_s``: it copies what no reader still needs, never
waits for the writer or blocks it, and its sync runs here. Durability does not change:
a commit is durable once its WAL frames are synced (``synchronous = FULL``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


class WalCheckpointer:
    """A daemon thread running ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval_s``."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.checkpoints = 0
        # Opened here, by the store's opener, not later in the thread: opened late, after
        # the file was removed, it would create an empty database in its place.
        self._conn: sqlite3.Connection | None
        try:
            self._conn = connect()
        except sqlite3.Error:
            log.exception("WAL checkpoints disabled: cannot open the audit store")
            self._conn = None
        self._thread = threading.Thread(
            target=self._run, name="riskscore-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # Busy or briefly failing: the WAL only grows until the next one.
                    log.warning("WAL checkpoint failed, retrying: %s", exc)
        finally:
            conn.close()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout)
