"""The README stays true: its configuration table lists every setting the service reads."""

from __future__ import annotations

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
