"""The README's "Try it" and "Compliance" blocks, run as written, top to bottom, against a
real `riskscore serve` on a fresh data directory — as a newcomer would after `make run`.

Only the addresses change: the service listens on a free port (the README says 8080) and
its embedded broker on another (the README says 9092). Every command must exit 0; every
JSON answer must have the keys the README's example shows (and the README must show every
top-level key of the real answer), with the same words where the example gives them;
every download must be the real thing (HTML, CSV, JSON lines), never an error body.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SECTIONS = (("## Try it\n", "## HTTP API\n"), ("## Compliance\n", "\n## "))
# Values that differ from run to run, shown in the README as an example only.
VOLATILE = {"decided_at", "received_at"}
# A topic's newest record: which payment's decision it is, and when it was appended,
# depend on the run (the partitions are filled concurrently).
VOLATILE_IN_A_TOPIC = VOLATILE | {"timestamp", "key", "transaction_id"}


@dataclass(frozen=True)
class Step:
    command: str
    expected: str  # the example output below the command ("" if none is shown)


def walkthrough() -> list[Step]:
    """Every `$ ` command of the two sections' code blocks, in order, with its output."""
    steps: list[Step] = []
    for start, end in SECTIONS:
        section = README[README.index(start) :]
        section = section[: section.index(end, len(start))]
        for block in re.findall(r"^```\n(.*?)^```$", section, flags=re.S | re.M):
            steps += _steps(block.splitlines())
    return steps


def _steps(lines: list[str]) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while _incomplete(command):
            i += 1
            command += "\n" + lines[i]
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        steps.append(Step(command, "\n".join(output).strip()))
    return steps


def _incomplete(command: str) -> bool:
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command)
    except ValueError:  # a quote still open: the command goes on on the next line
        return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Service:
    port: int
    kafka_port: int
    workdir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`riskscore serve` as `make run` starts it (Kafka on), in a fresh working directory."""
    workdir = tmp_path_factory.mktemp("walkthrough")
    port, kafka_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSCORE_")}
    # This checkout's code, whichever checkout the virtual environment was installed from.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RISKSCORE_KAFKA_EMBEDDED_PORT"] = str(kafka_port)
    log = workdir / "serve.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            cwd=workdir,
            env={**env, "RISKSCORE_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            _wait_ready(port, server, log)
            yield Service(port, kafka_port, workdir, env)
        finally:
            server.terminate()
            server.wait(timeout=60)


def _wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, f"riskscore serve exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)  # polling readiness, not waiting in its place
    raise AssertionError(f"riskscore serve not ready after 180 s:\n{log.read_text()}")


def _localised(command: str, service: Service) -> str:
    """The command with this run's addresses and virtual environment."""
    command = command.replace("localhost:8080", f"localhost:{service.port}")
    command = command.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return command


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _values(value: Any, key: str) -> list[Any]:
    if isinstance(value, dict):
        found = [value[key]] if key in value else []
        return found + [x for v in value.values() for x in _values(v, key)]
    if isinstance(value, list):
        return [x for v in value for x in _values(v, key)]
    return []


def check_json_answer(expected: str, stdout: str, volatile: set[str] = VOLATILE) -> None:
    """The real answer has the keys (and the words) of the README's example, and the
    example shows every top-level key of the real answer."""
    answer = json.loads(stdout)
    shown = set(re.findall(r'"(\w+)"\s*:', expected))
    assert shown <= _keys(answer), f"README shows keys the answer lacks: {shown - _keys(answer)}"
    assert set(answer) <= shown, f"answer keys the README leaves out: {set(answer) - shown}"
    for key, text in re.findall(r'"(\w+)"\s*:\s*"([^"]*)"', expected):
        if key in volatile:
            continue
        real = [v for v in _values(answer, key) if isinstance(v, str)]
        if text.endswith("…"):  # shortened in the README: the real value starts so
            assert any(v.startswith(text[:-1]) for v in real), (key, text, real)
        else:
            assert text in real, (key, text, real)
    for key, word in re.findall(r'"(\w+)"\s*:\s*(true|false|null)\b', expected):
        assert json.loads(word) in _values(answer, key), (key, word)


def check_download(path: Path) -> None:
    """A saved answer is the document asked for, not an error body."""
    assert path.is_file() and path.stat().st_size > 0, path
    if path.suffix not in (".html", ".csv", ".jsonl"):
        return  # a data file of our own (history.csv.gz): its command's exit status tells
    text = path.read_text()
    if path.suffix == ".html":
        assert text.startswith("<!DOCTYPE html>"), text[:200]
    elif path.suffix == ".csv":
        header, *rows = text.splitlines()
        assert "transaction_id" in header and rows, text[:200]
    elif path.suffix == ".jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        assert records and all("transaction_id" in r for r in records), text[:200]


def test_the_walkthrough_is_found() -> None:
    steps = walkthrough()
    commands = [s.command for s in steps]
    assert commands[0] == "source .venv/bin/activate"  # the CLI is on PATH from here
    assert sum(c.startswith("curl") for c in commands) >= 9
    assert any(c.startswith("riskscore report") for c in commands)
    assert sum(bool(s.expected) for s in steps) >= 7


@pytest.mark.slow
def test_the_readme_runs_as_written(service: Service) -> None:
    prelude: list[str] = []  # activation and variables carry over to later commands
    for step in walkthrough():
        command = _localised(step.command, service)
        done = subprocess.run(
            ["bash", "-c", "\n".join([*prelude, command])],
            cwd=service.workdir,
            env=service.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{step.command}\nexit {done.returncode}: {done.stderr}"
        if command.startswith("source ") or re.match(r"^[A-Z_]+=", command):
            prelude.append(command)
        if step.expected.startswith("{"):
            tail = command.startswith("riskscore tail")
            check_json_answer(step.expected, done.stdout, VOLATILE_IN_A_TOPIC if tail else VOLATILE)
        elif step.expected:
            shown = step.expected.replace("127.0.0.1:9092", f"127.0.0.1:{service.kafka_port}")
            assert done.stdout.strip() == shown
        saved = re.search(r"(?:-o|--out) (\S+)", command)
        if saved:
            check_download(service.workdir / saved[1])
