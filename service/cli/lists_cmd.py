"""`riskscore lists`: the allow and block lists from a file, and as they stand.

Writes go to the audit store's append-only log of list changes, like the HTTP endpoints;
running services (every worker and consumer) apply them within RISKSCORE_LISTS_POLL_MS.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
from pathlib import Path

from explain.audit.list_log import NewListChange
from explain.audit.store import AuditStoreError
from features.card_numbers import CardNumberRefused, contains_card_number
from models.rules.lists import LIST_NAMES, ListName, ListOp, ListState
from service.audit_backend import open_audit_store
from service.cli.audit_cmd import audit_file_option, open_store
from service.cli.errors import UserError, load_settings
from service.list_models import MAX_REASON_CHARS

DESCRIPTION = """\
The allow and block lists (blocked_customers, blocked_terminals, allowed_customers,
allowed_terminals): block lists decline, allow lists approve (a block still declines).

  load FILE   append the changes of a CSV file with the header list,value,reason (and
              optionally op: add, the default, or remove), all in one transaction; the
              file is checked whole first, an error names its line. Each change records
              who (--by, default the user running the command), when and why.
  show        every list as stored, with each entry's reason.

Examples:
  riskscore lists load blocked.csv --by "fraud-ops ticket 4411"
  riskscore lists show"""

_OPS: tuple[ListOp, ...] = ("add", "remove")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lists",
        help="load the allow and block lists from a file, or show them",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="lists_command", required=True, metavar="ACTION")
    load = commands.add_parser(
        "load",
        help="append list changes from a CSV file (list,value,reason[,op])",
        description="Append the list changes of FILE (see riskscore lists -h).",
    )
    load.add_argument("file", type=Path, metavar="FILE", help="CSV: list,value,reason[,op]")
    load.add_argument("--by", metavar="WHO", help="who makes the change (default: your user)")
    audit_file_option(load)
    load.set_defaults(run=run_load)
    show = commands.add_parser("show", help="print every list as stored")
    audit_file_option(show)
    show.set_defaults(run=run_show)


def read_changes(text: str, actor: str, screen: object) -> list[tuple[int, NewListChange]]:
    """The changes of a list file, or :class:`UserError` naming the first bad line.

    ``screen`` is the card-number policy's ``screen`` (a card number as a value is refused
    or tokenised like every id entering riskscore).
    """
    assert callable(screen)
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    missing = {"list", "value", "reason"} - fields
    if missing:
        raise UserError(f"line 1: the header needs list,value,reason (missing {sorted(missing)})")
    changes = []
    for row in reader:
        line = reader.line_num
        name = (row.get("list") or "").strip()
        value = row.get("value") or ""
        reason = (row.get("reason") or "").strip()
        op = (row.get("op") or "add").strip() or "add"
        if name not in LIST_NAMES:
            raise UserError(f"line {line}: no list {name!r}; the lists are {', '.join(LIST_NAMES)}")
        if op not in _OPS:
            raise UserError(f"line {line}: op must be add or remove, not {op!r}")
        if not 1 <= len(value) <= 128 or not value.isprintable() or value in (".", ".."):
            raise UserError(f"line {line}: the value must be 1 to 128 printable characters")
        if op == "add" and not reason:
            raise UserError(f"line {line}: say why (the reason column) for an addition")
        if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
            raise UserError(f"line {line}: a reason is one line of at most {MAX_REASON_CHARS}")
        if contains_card_number(reason):
            raise UserError(f"line {line}: a reason cannot hold a card number; use its token")
        if value != value.strip():
            # Ids are matched exactly: " c-1" would never match customer c-1, and stripping
            # it silently would record another value than the file says.
            raise UserError(
                f"line {line}: the value {value!r} has spaces around it; ids are matched "
                "exactly, so write it without them"
            )
        try:
            value = screen(value)
        except CardNumberRefused as exc:
            raise UserError(f"line {line}: value: {exc}") from None
        list_name: ListName = name
        changes.append((line, NewListChange(list_name, value, op, reason, actor)))
    return changes


def check_removals(changes: list[tuple[int, NewListChange]], current: ListState) -> None:
    """:class:`UserError` for a removal of a value that is not on its list when the file's
    earlier lines have been applied (over HTTP the same removal is a 404): a removal that
    removes nothing would leave an entry in force while the operator believes it gone."""
    listed = {name: set(values) for name, values in current.entries.items()}
    for line, change in changes:
        values = listed[change.list_name]
        if change.op == "add":
            values.add(change.value)
        elif change.value in values:
            values.discard(change.value)
        else:
            raise UserError(f"line {line}: {change.value!r} is not on the {change.list_name} list")


def run_load(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {args.file}: {exc}") from exc
    actor = f"riskscore lists load by {args.by or getpass.getuser()}"
    changes = read_changes(text, actor, settings.card_numbers.card_number_policy().screen)
    # Unlike a report, loading may create the store: lists can be set before the first start.
    try:
        store = open_audit_store(settings, sqlite_file=args.audit_file)
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    try:
        check_removals(changes, ListState().applied(store.list_changes_after(0)))
        stored = store.append_list_changes([change for _, change in changes])
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    version = stored[-1].id if stored else 0
    print(f"{len(stored)} list changes recorded from {args.file} (lists version {version})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings, args.audit_file)
    try:
        state = ListState().applied(store.list_changes_after(0))
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    print(f"lists version {state.version}")
    for name in LIST_NAMES:
        entries = state.entries[name]
        print(f"{name} ({len(entries)})")
        for value, reason in sorted(entries.items()):
            print(f"  {value}\t{reason}")
    return 0
