"""`riskscore consume` stopped by a supervisor while it is still starting: a clean exit.

Loading the model and its libraries takes seconds; a SIGTERM then used to kill the process
by the signal (exit -15), since the event loop's handler is installed only once they are
loaded. The command now remembers a signal from its first line and stops before starting
the consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streaming.broker import EmbeddedBroker
from streaming.config import Topics

DEADLINE_S = 120.0


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (its caught-signals mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(
        next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
    )
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def test_a_sigterm_while_starting_exits_cleanly_before_consuming(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "RISKSCORE_DATA_DIR": str(tmp_path / "var"),
        "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "RISKSCORE_KAFKA_TRANSACTIONS_TOPIC": topics.transactions,
        "RISKSCORE_KAFKA_DECISIONS_TOPIC": topics.decisions,
        "RISKSCORE_KAFKA_DEAD_LETTER_TOPIC": topics.dead_letters,
        "RISKSCORE_KAFKA_LABELS_TOPIC": topics.labels,
        "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "consume"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        # The condition waited on: the first handler in place (the command's first lines).
        while not _catches_sigterm(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no SIGTERM handler was ever installed"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()[-2000:]
    # Stopped before the consumer started: it never joined the group nor printed totals.
    assert b"stream_summary" not in out
