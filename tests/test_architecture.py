"""The import rules: docs/architecture.md's table and the import-linter contracts that
`make lint` checks say the same, the tree keeps them, and a forbidden import fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("features", "models", "explain", "streaming", "service", "loadtest")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _documented() -> dict[str, set[str]]:
    """Package → the packages of ours it may import, from the architecture document."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Packages and allowed imports", 1)[1].split("\n## ", 1)[0]
    allowed: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)/`", cells[0]) if len(cells) == 3 else None
        if match is None:
            continue
        may = cells[2]
        names = set(re.findall(r"`(\w+)`", may))
        allowed[match.group(1)] = set(PACKAGES) - {match.group(1)} if "everything" in may else names
    return allowed


def _contracts() -> dict[str, set[str]]:
    """Package → the packages of ours the contracts let it import."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(config["root_packages"]) == set(PACKAGES)
    forbidden: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for contract in config["contracts"]:
        assert contract["type"] == "forbidden"
        for source in contract["source_modules"]:
            forbidden[source] |= set(contract["forbidden_modules"])
    return {p: set(PACKAGES) - {p} - forbidden[p] for p in PACKAGES}


def test_the_document_and_the_contracts_say_the_same() -> None:
    documented = _documented()
    assert set(documented) == set(PACKAGES)
    assert documented == _contracts()
    # Nothing imports the composition root.
    assert all("service" not in may for p, may in documented.items() if p != "service")


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_the_rules() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_fails_the_check(tmp_path: Path) -> None:
    # A copy of the project's contracts over a tree of empty packages, where features
    # (which may import nothing of ours) imports the service.
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "features" / "leak.py").write_text("import service\n")
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject[pyproject.index("[tool.importlinter]") :]
    (tmp_path / "pyproject.toml").write_text(section)

    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "features imports nothing of ours BROKEN" in result.stdout
    assert "features.leak -> service" in result.stdout
