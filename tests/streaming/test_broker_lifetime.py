"""The embedded broker ends with the process that started it, however that process ends,
and a broker of ours left on the port by an earlier run is replaced (real processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streaming.broker import BrokerError, EmbeddedBroker, free_port, port_free, tansu_binary
from streaming.broker_record import BrokerRecord
from streaming.port_holder import is_running, start_time

DEADLINE_S = 10.0

# A process that starts the broker, says its pid, and waits to be killed.
OWNER = """
import sys, threading
from pathlib import Path
from streaming.broker import EmbeddedBroker
broker = EmbeddedBroker(port=int(sys.argv[1]), pid_file=Path(sys.argv[2]))
# Started from a thread that then ends, as the service starts it from a worker thread.
thread = threading.Thread(target=broker.start)
thread.start()
thread.join()
print(broker.broker_pid, broker._process.pid, flush=True)
threading.Event().wait()
"""


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while is_running(pid):  # the condition waited on; the loop ends when it holds
        assert time.monotonic() < deadline, f"pid {pid} outlived its parent"
        time.sleep(0.02)


def _owner(port: int, pid_file: Path) -> tuple[subprocess.Popen[str], int, int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(port), str(pid_file)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert owner.stdout is not None
    broker_pid, guard_pid = map(int, owner.stdout.readline().split())
    assert is_running(broker_pid) and not port_free(port)
    return owner, broker_pid, guard_pid


@pytest.mark.parametrize("victim", ["owner", "guard"])
def test_a_broker_does_not_outlive_a_kill_9(tmp_path: Path, victim: str) -> None:
    port = free_port()
    owner, broker_pid, guard_pid = _owner(port, tmp_path / "broker.pid")
    try:
        os.kill(owner.pid if victim == "owner" else guard_pid, signal.SIGKILL)
        _wait_gone(broker_pid)
        # Its listener goes with it, though the kernel may release the port a moment
        # after the pid is gone (seen once on a loaded machine).
        deadline = time.monotonic() + DEADLINE_S
        while not port_free(port):
            assert time.monotonic() < deadline, f"port {port} still taken"
            time.sleep(0.02)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_stale_broker_of_ours_is_replaced(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "broker.pid"
    # What an earlier version (or a guard stopped in its tracks) could leave: a broker
    # without a guard, named in the pid file, its owner gone.
    command = [
        str(tansu_binary()),
        *("broker", "--listener-url", f"tcp://127.0.0.1:{port}"),
        *("--advertised-listener-url", f"tcp://127.0.0.1:{port}"),
        *("--storage-engine", "memory://tansu/"),
    ]
    stale = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    BrokerRecord(port, stale.pid, command, int(gone.stdout), None).write(pid_file)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while port_free(port):  # until the stale broker listens
            assert time.monotonic() < deadline and stale.poll() is None
            time.sleep(0.02)
        with EmbeddedBroker(port=port, pid_file=pid_file) as broker:
            assert stale.wait(DEADLINE_S) == -signal.SIGKILL
            assert broker.broker_pid != stale.pid
            assert BrokerRecord.read(pid_file) is not None
        assert BrokerRecord.read(pid_file) is None  # removed on a clean stop
    finally:
        stale.kill()
        stale.wait()


def test_the_broker_of_a_running_service_is_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "broker.pid"
    with EmbeddedBroker(port=free_port(), pid_file=pid_file) as running:
        with pytest.raises(BrokerError) as refused:
            EmbeddedBroker(port=running.port, pid_file=pid_file).start()
        assert f"riskscore pid {os.getpid()}, which is still running" in str(refused.value)
        assert running.broker_pid is not None and is_running(running.broker_pid)


def test_a_port_held_by_another_program_names_its_pid(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # Even a pid file naming this port does not make the listener ours.
        BrokerRecord(port, os.getpid(), ["x"], os.getpid(), start_time(os.getpid())).write(
            tmp_path / "broker.pid"
        )
        with pytest.raises(BrokerError) as refused:
            EmbeddedBroker(port=port, pid_file=tmp_path / "broker.pid").start()
    message = str(refused.value)
    assert f"port {port} is already in use by pid {os.getpid()}" in message
    assert "RISKSCORE_KAFKA_EMBEDDED_PORT" in message
