"""`riskscore audit`: the audit store's retention and backup, and where every command that
reads the store finds it (``open_store``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStore, AuditStoreError
from service.cli.errors import UserError, load_settings
from service.settings import Settings

DESCRIPTION = """\
The audit store's upkeep. The store is the SQLite file in RISKSCORE_DATA_DIR, or the
PostgreSQL database of RISKSCORE_AUDIT_URL when set (--audit-file names a SQLite file
instead).

  prune    remove decisions older than a retention period — the one way records leave
           the store, and itself recorded in the store's retention_log table.
           PostgreSQL: drops whole monthly partitions that lie entirely before the
           cutoff (a month is kept while any of it is inside the period).
           SQLite: a compaction in one transaction (decisions before the cutoff and
           their labels); run it when the service is quiet, it holds the write lock.
  scan     where the store holds card numbers in clear (written before ids were
           screened, or under RISKSCORE_PAN_POLICY=allow): table, column, how many,
           first and last time — never a number itself. Exit status 1 when any is
           found (README: Card numbers says what to do then).
  backup   SQLite: a consistent copy of the file, taken while the service runs
           (SQLite's online backup API). PostgreSQL: use pg_dump, or base backups with
           WAL archiving for point-in-time recovery (see the README).

Examples:
  RISKSCORE_AUDIT_RETENTION_DAYS=400 riskscore audit prune
  riskscore audit prune --older-than 400
  riskscore audit scan
  riskscore audit backup backups/audit-2024-06-01.sqlite3"""

PG_BACKUP = (
    "the audit store is PostgreSQL: back it up with pg_dump (pg_dump -Fc -f audit.dump "
    "DATABASE_URL) or base backups with WAL archiving for point-in-time recovery "
    "(README: Audit store on PostgreSQL)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "audit",
        help="audit store retention (prune), card-number scan and backup",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    prune = commands.add_parser(
        "prune",
        help="remove decisions older than the retention period",
        description="Remove decisions older than --older-than days (see riskscore audit -h).",
    )
    prune.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help="retention period in days (default: RISKSCORE_AUDIT_RETENTION_DAYS)",
    )
    audit_file_option(prune)
    prune.set_defaults(run=run_prune)
    scan = commands.add_parser(
        "scan",
        help="report where the store holds card numbers (never the numbers)",
        description="Report how many stored values hold a card number, by table and column, "
        "with the first and last time; exit status 1 when any is found.",
    )
    audit_file_option(scan)
    scan.set_defaults(run=run_scan)
    backup = commands.add_parser(
        "backup",
        help="copy the SQLite audit file while the service runs",
        description="Write a consistent copy of the SQLite audit store to OUT (a new file).",
    )
    backup.add_argument("out", type=Path, metavar="OUT", help="the copy (must not exist)")
    audit_file_option(backup)
    backup.set_defaults(run=run_backup)


def audit_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audit-file",
        type=Path,
        metavar="FILE",
        help="a SQLite audit file (default: RISKSCORE_AUDIT_URL if set, else audit.sqlite3 "
        "in RISKSCORE_DATA_DIR)",
    )


def open_store(settings: Settings, audit_file: Path | None) -> AuditStore:
    """The store a command reads: --audit-file, else the configured one. A SQLite file
    must exist: opening would create an empty one, and a typo must not give an empty
    report."""
    from service.audit_backend import open_audit_store

    if audit_file is not None or settings.audit.url is None:
        path = audit_file or settings.audit_path
        if not path.is_file():
            raise UserError(f"no audit store at {path} (see --audit-file)")
        audit_file = path
    try:
        return open_audit_store(settings, sqlite_file=audit_file)
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc


def run_prune(args: argparse.Namespace) -> int:
    settings = load_settings()
    days = args.older_than if args.older_than is not None else settings.audit.retention_days
    if days is None:
        raise UserError(
            "no retention period: give --older-than DAYS or set RISKSCORE_AUDIT_RETENTION_DAYS"
        )
    if days < 1:
        raise UserError("--older-than: must be at least 1 day")
    store = open_store(settings, args.audit_file)
    try:
        pruned = store.prune(days)
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    dropped = f" (partitions {', '.join(pruned.partitions)})" if pruned.partitions else ""
    print(
        f"removed {pruned.decisions} decisions and {pruned.labels} labels older than "
        f"{days} days{dropped}"
    )
    return 0


def run_backup(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.audit_file is None and settings.audit.url is not None:
        raise UserError(PG_BACKUP)
    if args.out.exists():
        raise UserError(f"{args.out} already exists: a backup never overwrites")
    if not args.out.parent.is_dir():
        raise UserError(f"directory {str(args.out.parent)!r} does not exist")
    store = open_store(settings, args.audit_file)
    assert isinstance(store, SQLiteAuditStore)  # PostgreSQL was refused above
    try:
        with tqdm(desc="pages", unit=" pages", file=sys.stderr, leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            store.backup(args.out, progress)
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    print(f"audit store backed up -> {args.out}")
    return 0


def run_scan(args: argparse.Namespace) -> int:
    from explain.audit.card_number_scan import scan_postgres, scan_sqlite

    settings = load_settings()
    try:
        if args.audit_file is not None or settings.audit.url is None:
            path = args.audit_file or settings.audit_path
            if not path.is_file():
                raise UserError(f"no audit store at {path} (see --audit-file)")
            where, findings = str(path), scan_sqlite(path)
        else:
            from explain.audit.postgres_connect import connect
            from features.url_redaction import redact

            url = settings.audit.url.get_secret_value()
            where = redact(url)
            connection = connect(
                url,
                connect_timeout_s=settings.audit.connect_timeout_s,
                statement_timeout_ms=settings.audit.statement_timeout_ms,
                autocommit=False,
            )
            try:
                findings = scan_postgres(connection)
            finally:
                connection.close()
    except AuditStoreError as exc:
        raise UserError(str(exc)) from exc
    if not findings:
        print(f"no card numbers found in {where}")
        return 0
    total = sum(f.count for f in findings)
    print(f"{total} stored values hold a card number in {where}:")
    for finding in findings:
        print(f"  {finding.line()}")
    print("see the README (Card numbers) for what to do")
    return 1
