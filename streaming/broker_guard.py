"""Runs the embedded broker as its child and takes it down with the process that started it.

Started by :class:`streaming.broker.EmbeddedBroker` as ``python -I broker_guard.py
<broker command...>`` with a pipe on its standard input. Standard library only: it runs
isolated, outside the project's imports.

Two mechanisms, because either alone leaves a gap:

* the pipe: the starting process holds its only write end, so when that process ends in
  any way (``kill -9``, an OOM kill, a crash) the kernel closes it and the guard reads end
  of file, kills the broker and exits. ``PR_SET_PDEATHSIG`` on the broker directly would
  not do: it fires when the *thread* that forked the child ends, and the service starts
  the broker from a worker thread.
* ``PR_SET_PDEATHSIG`` on the broker, set by this single-threaded guard between fork and
  exec (where running Python code after ``fork`` is safe): if the guard itself is killed,
  the kernel sends the broker ``SIGKILL``.

The guard writes the broker's pid on its standard output (one line), then exits with the
broker's exit status when the broker ends on its own.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None  # not Linux: the pipe alone ends the broker


def main(command: list[str]) -> int:
    prctl = _prctl()
    guard = os.getpid()

    def die_with_guard() -> None:
        # In the child, after fork: the guard has one thread, so this is safe.
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != guard:  # the guard died before prctl took effect
            os._exit(1)

    # The terminal's Ctrl-C is for the service, which stops the broker when it is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    broker = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the pipe to the owner carries the pid line only
        preexec_fn=die_with_guard,
    )
    sys.stdout.write(f"{broker.pid}\n")
    sys.stdout.flush()
    owner = sys.stdin.fileno()
    # Linux: a descriptor that becomes readable when the broker ends; elsewhere, a poll.
    ended = [os.pidfd_open(broker.pid)] if hasattr(os, "pidfd_open") else []
    while True:
        ready, _, _ = select.select([owner, *ended], [], [], None if ended else 0.5)
        if broker.poll() is not None:
            return broker.returncode
        if owner not in ready:
            continue
        if not os.read(owner, 512):
            # The owner closed the pipe or died. Memory storage: nothing to flush, and its
            # clients are gone or going, so no grace period.
            broker.kill()
            broker.wait()
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
