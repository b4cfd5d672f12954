"""The embedded broker's pid file: which broker this data directory started, and for whom.

A broker found on the port at start is stopped only when this file names it — the same
pid running the same command line — and the process that started it is gone. Anything
else on the port is someone else's, and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from streaming.port_holder import command_line, is_running, start_time

# How long a stale broker gets to release its port after SIGKILL.
RELEASE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class BrokerRecord:
    port: int
    broker_pid: int
    command: list[str]
    owner_pid: int
    owner_started: int | None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(path)  # never a half-written file for the next start to misread

    @classmethod
    def read(cls, path: Path) -> BrokerRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # absent, or not ours to trust

    def broker_running(self) -> bool:
        return is_running(self.broker_pid) and command_line(self.broker_pid) == self.command

    def owner_running(self) -> bool:
        return is_running(self.owner_pid) and start_time(self.owner_pid) == self.owner_started

    def stop_broker(self) -> bool:
        """SIGKILL the recorded broker and wait until it is gone; False if it outlives the
        wait. Memory storage: there is nothing to flush."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.broker_pid, signal.SIGKILL)
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while self.broker_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)  # waiting for the kernel to end it, bounded by the deadline
        return True


def remove_if_names(path: Path, broker_pid: int) -> None:
    """Delete the file if it still describes ``broker_pid`` (not a later start's)."""
    record = BrokerRecord.read(path)
    if record is not None and record.broker_pid == broker_pid:
        with contextlib.suppress(OSError):
            path.unlink()
