"""`riskscore rules check` and `riskscore lists load`: a file checked whole, an error named
with its place, before anything is put in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main


def test_rules_check_prints_the_rules_and_their_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text(
        "# wave\nbig: amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2 -> review\n"
    )
    assert main(["rules", "check", str(rules)]) == 0
    out = capsys.readouterr().out
    assert "big: amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2 -> review" in out
    assert "1 rules, version rules-" in out


def test_rules_check_names_the_line_and_column_of_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("ok: amount > 1 -> review\nbad: amount > 1 and -> decline\n")
    assert main(["rules", "check", str(rules)]) == 2
    assert f"{rules}:2:21: expected a value, found '->'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("list,value\nblocked_customers,c1\n", "line 1: the header needs list,value,reason"),
        ("list,value,reason\nblocked_cards,c1,x\n", "line 2: no list 'blocked_cards'"),
        ("list,value,reason\nblocked_customers,c1,\n", "line 2: say why"),
        ("list,value,reason,op\nblocked_customers,c1,x,drop\n", "line 2: op must be add or remove"),
        (
            "list,value,reason\nblocked_customers,c1,x\nallowed_customers,4111111111111111,y\n",
            "line 3: value:",
        ),
    ],
)
def test_lists_load_refuses_a_bad_file_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    text: str, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("RISKSCORE_DATA_DIR", str(tmp_path / "var"))
    listed = tmp_path / "lists.csv"
    listed.write_text(text)
    assert main(["lists", "load", str(listed)]) == 2
    err = capsys.readouterr().err
    assert message in err and "4111111111111111" not in err
    # Checked before the store was opened: nothing was written, not even a file.
    assert not (tmp_path / "var" / "audit.sqlite3").exists()


def test_lists_load_sets_the_lists_before_the_first_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKSCORE_DATA_DIR", str(tmp_path / "var"))
    listed = tmp_path / "lists.csv"
    listed.write_text("list,value,reason\nblocked_terminals,t-9,skimmer\n")
    assert main(["lists", "load", str(listed), "--by", "ops"]) == 0
    assert "1 list changes recorded" in capsys.readouterr().out
    assert main(["lists", "show"]) == 0
    shown = capsys.readouterr().out
    assert "blocked_terminals (1)\n  t-9\tskimmer" in shown


def test_lists_load_refuses_a_value_with_spaces_and_a_removal_that_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKSCORE_DATA_DIR", str(tmp_path / "var"))
    listed = tmp_path / "lists.csv"
    listed.write_text("list,value,reason\nallowed_customers,c-1,vip\n")
    assert main(["lists", "load", str(listed), "--by", "ops"]) == 0
    capsys.readouterr()
    # " c-1" would never match customer c-1: refused, not recorded and not stripped.
    listed.write_text("list,value,reason,op\nallowed_customers, c-1,,remove\n")
    assert main(["lists", "load", str(listed)]) == 2
    assert "line 2: the value ' c-1' has spaces around it" in capsys.readouterr().err
    # A removal of a value the list does not hold is refused whole (HTTP answers 404).
    listed.write_text(
        "list,value,reason,op\nblocked_terminals,t-1,skimmer,add\nallowed_customers,c-2,,remove\n"
    )
    assert main(["lists", "load", str(listed)]) == 2
    assert "line 3: 'c-2' is not on the allowed_customers list" in capsys.readouterr().err
    # Removals see the file's earlier lines; nothing of the refused file was recorded.
    listed.write_text(
        "list,value,reason,op\nblocked_terminals,t-1,skimmer,add\n"
        "blocked_terminals,t-1,,remove\nallowed_customers,c-1,,remove\n"
    )
    assert main(["lists", "load", str(listed)]) == 0
    assert "3 list changes recorded" in capsys.readouterr().out
    assert main(["lists", "show"]) == 0
    shown = capsys.readouterr().out
    assert "c-1" not in shown and "t-1" not in shown
