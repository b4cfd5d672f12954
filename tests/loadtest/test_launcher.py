"""The installed `riskscore-loadtest` runs: with the loadtest extra it is the load
generator; without it, one line naming the extra and exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _console_script() -> tuple[str, str]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["riskscore-loadtest"].split(":")
    return module, function


def _run_script(*args: str, hide: str | None = None) -> subprocess.CompletedProcess[str]:
    module, function = _console_script()
    # A module set to None in sys.modules cannot be imported: as if it were not installed.
    hiding = f"sys.modules[{hide!r}] = None; " if hide else ""
    code = (
        f"import sys; {hiding}from {module} import {function}; "
        f"raise SystemExit({function}({list(args)!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_help_runs_with_the_extra_installed() -> None:
    done = _run_script("--help")
    assert done.returncode == 0, done.stderr
    assert "usage: riskscore-loadtest" in done.stdout


@pytest.mark.parametrize("module", ["hdrh", "httptools"])
def test_without_the_extra_one_line_names_it(module: str) -> None:
    done = _run_script("--help", hide=module)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "riskscore-loadtest needs the loadtest extra: pip install -e '.[loadtest]'" in lines[0]
    assert repr(module) in lines[0]


def test_extra_modules_are_those_runtime_lacks() -> None:
    # Every module the launcher treats as "the extra" really comes only with the extra.
    from loadtest.launcher import EXTRA_MODULES

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    extra = " ".join(project["optional-dependencies"]["loadtest"])
    distributions = {"hdrh": "hdrhistogram", "httptools": "httptools"}
    for module in EXTRA_MODULES:
        assert distributions[module] in extra
        assert distributions[module] not in runtime
