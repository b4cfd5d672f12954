"""`make test` gets its system packages itself: tests/system_packages.sh names what is
missing in one line (or installs it with apt-get as root), within seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "system_packages.sh"
BASH = shutil.which("bash") or "/bin/bash"
EVERY_PACKAGE = (
    "chromium chromium-driver postgresql redis-server libpango-1.0-0 libpangoft2-1.0-0"
    " fonts-dejavu-core"
)
# The files that show the libraries and the font installed, below the test's own root.
FILES = (
    "usr/lib/x86_64-linux-gnu/libpango-1.0.so.0",
    "usr/lib/x86_64-linux-gnu/libpangoft2-1.0.so.0",
    "usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PATH is only the given directory, files are looked for below it: the machine's own
    # binaries and libraries are hidden.
    return subprocess.run(
        [BASH, str(SCRIPT), *args],
        env={"PATH": str(path), "SYSTEM_PACKAGES_ROOT": str(path)},
        capture_output=True,
        text=True,
        timeout=10,
    )


def _files(root: Path) -> None:
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _fake(directory: Path, *names: str, body: str = "exit 0") -> None:
    for name in names:
        (directory / name).write_text(f"#!{BASH}\n{body}\n")
        (directory / name).chmod(0o755)


def test_check_names_every_missing_package_in_one_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "--check")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"missing system packages; run: apt-get install -y {EVERY_PACKAGE}"
    ]


def test_only_the_missing_ones_are_named(tmp_path: Path) -> None:
    _fake(tmp_path, "chromium", "chromedriver", "pg_ctlcluster")
    _files(tmp_path)
    result = _run(tmp_path, "--check")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("apt-get install -y redis-server")


def test_nothing_to_do_when_everything_is_there(tmp_path: Path) -> None:
    _fake(tmp_path, "chromium", "chromedriver", "pg_ctlcluster", "redis-server")
    _files(tmp_path)
    checked = _run(tmp_path, "--check")
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    assert _run(tmp_path).returncode == 0


def test_without_apt_get_it_stops_with_the_line_to_run(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"missing system packages; run as root: apt-get install -y {EVERY_PACKAGE}"
    ]


def test_with_apt_get_it_installs_as_root_only(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _fake(tmp_path, "apt-get", body=f'echo "$@" >> {calls}')
    _fake(tmp_path, "chromium", "chromedriver", "redis-server")
    _files(tmp_path)
    result = _run(tmp_path)
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stderr
        assert calls.read_text().splitlines() == ["update -qq", "install -y -qq postgresql"]
    else:
        assert result.returncode == 1
        assert not calls.exists()
        assert result.stderr.strip().endswith("apt-get install -y postgresql")


def test_a_bad_option_is_refused(tmp_path: Path) -> None:
    result = _run(tmp_path, "--install-everything")
    assert result.returncode == 2
    assert "unknown option --install-everything" in result.stderr
