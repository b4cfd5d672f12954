"""One process per in-process feature state: a lock on the data directory.

The ``memory`` backend's state lives in the process, and its checkpoint and warm start
belong to the data directory. Two processes on one directory would each replay the other's
decisions into their state and overwrite each other's checkpoint, so that a restart loads
a state missing its own payments. The second one is refused at start instead, naming the
holder. ``flock`` is released by the kernel when its holder ends in any way (``kill -9``
included): a stale lock never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from features.state import FeatureStateUnavailable

LOCK_FILE = "feature-state.lock"


class StateLock:
    """Held from :meth:`acquire` to :meth:`release` (or the process's end)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FeatureStateUnavailable(
                f"the in-process feature state of {self.path.parent} is held by another "
                f"riskscore process (pid {holder}); give each process its own "
                "RISKSCORE_DATA_DIR, or share the state in Redis (RISKSCORE_FEATURE_STATE_URL)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
