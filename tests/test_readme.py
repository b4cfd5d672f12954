"""The README stays true: its configuration table lists every setting the service reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.settings import allowed_values, known_variables, settings_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name, default, description in settings_table():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), "")
        assert row, f"{name} is missing from the README's configuration table"
        assert description in row
        if default:
            assert f"`{default}`" in row


def test_the_configuration_table_gives_every_limit() -> None:
    # The "allowed" column: what each variable accepts, as the settings enforce it.
    for name, (model, field) in known_variables().items():
        row = next(line for line in README.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] == allowed_values(model, field), name


def test_make_run_serves() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "run: $(RUN_STAMP)\n\t$(BIN)/riskscore serve" in makefile
    assert "make run     # serve the shipped model" in README


def _command_rows() -> list[str]:
    table = README[README.index("## Command line") : README.index("Every command has `--help`")]
    return [line for line in table.splitlines() if line.startswith("| `riskscore")]


def _leaf_commands() -> list[tuple[str, list[str]]]:
    """Every runnable `riskscore ...` command and its long options, from the parser."""
    from service.cli import build_parser

    found: list[tuple[str, list[str]]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, sub in subs[0].choices.items():
                walk(sub, f"{path} {name}")
            return
        options = [
            o
            for a in parser._actions
            for o in a.option_strings
            # Options hidden from --help are not for people (serve's --worker-index).
            if o.startswith("--") and o != "--help" and a.help != argparse.SUPPRESS
        ]
        found.append((path, options))

    walk(build_parser(), "riskscore")
    return found


def test_the_command_table_lists_every_command_and_option() -> None:
    rows = _command_rows()
    for command, options in _leaf_commands():
        row = next(
            (r for r in rows if r.startswith(f"| `{command} ") or r.startswith(f"| `{command}`")),
            "",
        )
        assert row, f"`{command}` is missing from the README's command table"
        missing = [o for o in options if o not in row]
        assert not missing, f"`{command}`: {missing} missing from its README row"
