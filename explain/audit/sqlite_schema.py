"""The SQLite audit database's layout, and the migrations that bring an older file up to it.

The schema version is kept in ``PRAGMA user_version`` (0 for a fresh file). Migration ``n``
(1-based) takes a file from version ``n - 1`` to ``n``; each step is a tuple of single SQL
statements, run with the others inside one ``BEGIN IMMEDIATE`` transaction so that a crash
or a concurrent opener never leaves a half-migrated file. Append new steps; never edit one
that has shipped, since files in the field were built by it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from explain.audit.store import AuditStoreError

# Columns beside record_json duplicate what queries filter and sort on; record_json is the
# record itself (version 1 rows; see _COMPACT for later ones). The CHECKs cannot catch a
# wrong value, only an impossible one, which no validated record can hold.
_DECISIONS = """
CREATE TABLE decisions (
    transaction_id TEXT PRIMARY KEY NOT NULL
        CHECK (length(transaction_id) BETWEEN 1 AND 128),
    request_sha256 TEXT NOT NULL CHECK (length(request_sha256) = 64),
    event_time_ms INTEGER NOT NULL,
    local_time_ms INTEGER NOT NULL,
    decided_at_ms INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    amount REAL NOT NULL CHECK (amount > 0),
    action TEXT NOT NULL CHECK (action IN ('approve', 'review', 'decline')),
    stage TEXT NOT NULL,
    score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
    model_version TEXT NOT NULL,
    record_json TEXT NOT NULL
)
"""

# AUTOINCREMENT so a label id is never reused: ids double as the order of arrival.
# labelled_at_ms holds the effective time (receipt when the label carried none);
# record_json keeps what was actually sent.
_LABELS = """
CREATE TABLE labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 128),
    is_fraud INTEGER NOT NULL CHECK (is_fraud IN (0, 1)),
    labelled_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    record_json TEXT NOT NULL
)
"""

# The rowid is implicitly the last column of every index, so ORDER BY event_time_ms, rowid
# is served by these without a sort.
_INDICES = (
    "CREATE INDEX decisions_by_time ON decisions (event_time_ms)",
    "CREATE INDEX decisions_by_action ON decisions (action, event_time_ms)",
    "CREATE INDEX decisions_by_customer ON decisions (customer_id, event_time_ms)",
    "CREATE INDEX labels_by_transaction ON labels (transaction_id, received_at_ms)",
)


def _refuse(table: str, event: str, message: str, when: str = "") -> str:
    return (
        f"CREATE TRIGGER {table}_refuse_{event.lower()} BEFORE {event} ON {table}"
        f"{when} BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


# History must not be rewritable even by hand-written SQL. INSERT OR REPLACE deletes the row
# it conflicts with without firing DELETE triggers (unless recursive_triggers is on, which
# is per connection), so a conflicting INSERT is refused too: the store's own writer skips
# existing ids itself. Only DROP can get past these, and that cannot be hidden.
# Retention (sqlite_retention.py) lifts these two inside its own transaction, and only there.
REFUSE_DELETE: Final[dict[str, str]] = {
    table: _refuse(table, "DELETE", f"audit {table} are immutable: DELETE refused")
    for table in ("decisions", "labels")
}
_IMMUTABLE = (
    _refuse("decisions", "UPDATE", "audit decisions are immutable: UPDATE refused"),
    REFUSE_DELETE["decisions"],
    _refuse(
        "decisions",
        "INSERT",
        "audit decisions are immutable: transaction_id already recorded",
        " WHEN EXISTS (SELECT 1 FROM decisions WHERE transaction_id = NEW.transaction_id)",
    ),
    _refuse("labels", "UPDATE", "audit labels are immutable: UPDATE refused"),
    REFUSE_DELETE["labels"],
    _refuse(
        "labels",
        "INSERT",
        "audit labels are immutable: label id already recorded",
        " WHEN EXISTS (SELECT 1 FROM labels WHERE id = NEW.id)",
    ),
)

# Version 2: compact records (explain/audit/compact.py). Rows written before stay as they
# are, their JSON in record_json; new rows leave record_json empty and keep their record in
# ``record`` beside the columns, with ``fallback`` as a column (it used to be read out of
# the JSON) and the explanation schema they refer to stored once. A row is one or the
# other, never both: the CHECK makes that a rule of the file, not only of the writer.
_COMPACT = (
    "ALTER TABLE decisions ADD COLUMN fallback INTEGER CHECK (fallback IN (0, 1))",
    "ALTER TABLE decisions ADD COLUMN record BLOB"
    " CHECK ((record IS NULL) <> (record_json = '') AND (record IS NULL OR fallback IS NOT NULL))",
    """
CREATE TABLE explanation_schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE CHECK (length(key) = 32),
    schema_json TEXT NOT NULL
)
""",
    _refuse("explanation_schemas", "UPDATE", "explanation schemas are immutable: UPDATE refused"),
    _refuse("explanation_schemas", "DELETE", "explanation schemas are immutable: DELETE refused"),
    _refuse(
        "explanation_schemas",
        "INSERT",
        "explanation schemas are immutable: key already recorded",
        " WHEN EXISTS (SELECT 1 FROM explanation_schemas WHERE key = NEW.key OR id = NEW.id)",
    ),
)

# Version 3: retention's own record. Each compaction (sqlite_retention.py), the one way
# rows leave the file, writes a row here in the same transaction as its deletes.
_RETENTION = (
    """
CREATE TABLE retention_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pruned_at_ms INTEGER NOT NULL,
    cutoff_ms INTEGER NOT NULL,
    decisions INTEGER NOT NULL,
    labels INTEGER NOT NULL
)
""",
    _refuse("retention_log", "UPDATE", "the retention log is immutable: UPDATE refused"),
    _refuse("retention_log", "DELETE", "the retention log is immutable: DELETE refused"),
)

# Version 4: what period reports aggregate, as columns written with each new row, so a
# report over a million decisions is a few GROUP BYs in SQLite rather than a million
# records decoded in Python: the latency in microseconds, the top reasons as positions in
# the explanation schema ("3,17,5": a model version's decisions share one feature order),
# the fallback reason, and an index that covers them. Rows written before keep
# NULL there (rows are immutable); the partial index finds them at once, and a report
# over a period holding any of them reads that period the slower way, record by record.
_REPORT_COLUMNS = (
    "ALTER TABLE decisions ADD COLUMN latency_us INTEGER",
    "ALTER TABLE decisions ADD COLUMN reason_positions TEXT",
    "ALTER TABLE decisions ADD COLUMN fallback_reason TEXT",
    "CREATE INDEX decisions_without_report_columns ON decisions (event_time_ms)"
    " WHERE latency_us IS NULL",
    # Covers what a period report reads: a report scans this (about a sixth of the table,
    # whose rows carry the compact record) instead of the table itself. It costs the
    # writer ~4 µs a decision (34.5 against 30.8 µs a row in groups of 200; README).
    "CREATE INDEX decisions_for_reports ON decisions (event_time_ms, action, stage, score,"
    " fallback, fallback_reason, model_version, latency_us, reason_positions)",
)

# Version 5: the payment as received when its amount was converted to the reference
# currency before features (features/currency.py): ``amount`` (and the compact record)
# hold the converted amount the features saw, these the original amount and currency and
# the rate table's version. NULL for rows written before and for payments taken as they
# came (no rate table configured).
_CURRENCY_COLUMNS = (
    "ALTER TABLE decisions ADD COLUMN original_amount REAL CHECK (original_amount > 0)",
    "ALTER TABLE decisions ADD COLUMN original_currency TEXT",
    "ALTER TABLE decisions ADD COLUMN rate_version TEXT",
)

# Version 6: the allow and block lists' history (explain/audit/list_log.py). Appended to,
# never changed: who, when and why of every addition and removal; a process's lists are
# these changes folded in id order, and max(id) is the version each process polls.
LIST_NAMES_SQL = (
    "('blocked_customers', 'blocked_terminals', 'allowed_customers', 'allowed_terminals')"
)
_LIST_CHANGES = (
    f"""
CREATE TABLE list_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list_name TEXT NOT NULL CHECK (list_name IN {LIST_NAMES_SQL}),
    value TEXT NOT NULL CHECK (length(value) BETWEEN 1 AND 128),
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    changed_at_ms INTEGER NOT NULL
)
""",
    _refuse("list_changes", "UPDATE", "list changes are immutable: UPDATE refused"),
    _refuse("list_changes", "DELETE", "list changes are immutable: DELETE refused"),
    _refuse(
        "list_changes",
        "INSERT",
        "list changes are immutable: change id already recorded",
        " WHEN EXISTS (SELECT 1 FROM list_changes WHERE id = NEW.id)",
    ),
)

# Version 7: the shadow challenger's verdicts (explain/audit/challenger_log.py), one row
# per (decision, challenger version), never inside the decision row. Immutable like
# decisions; a second insert for the same key is skipped (RAISE(IGNORE) runs before the
# key check, so INSERT OR REPLACE cannot get past it either): the first verdict stands.
# Retention deletes them with their decisions, by the decision's event time they carry.
_CHALLENGER_SCORES = (
    """
CREATE TABLE challenger_scores (
    transaction_id TEXT NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 128),
    model_version TEXT NOT NULL CHECK (length(model_version) BETWEEN 1 AND 128),
    event_time_ms INTEGER NOT NULL,
    score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
    action TEXT NOT NULL CHECK (action IN ('approve', 'review', 'decline')),
    review_threshold REAL NOT NULL,
    decline_threshold REAL NOT NULL,
    reasons_json TEXT NOT NULL,
    explanation_json TEXT NOT NULL,
    sequence_score REAL CHECK (sequence_score >= 0 AND sequence_score <= 1),
    scored_at_ms INTEGER NOT NULL,
    PRIMARY KEY (transaction_id, model_version)
)
""",
    "CREATE INDEX challenger_scores_by_time ON challenger_scores (event_time_ms, model_version)",
    _refuse("challenger_scores", "UPDATE", "audit challenger_scores are immutable: UPDATE refused"),
    _refuse("challenger_scores", "DELETE", "audit challenger_scores are immutable: DELETE refused"),
    "CREATE TRIGGER challenger_scores_keep_first BEFORE INSERT ON challenger_scores"
    " WHEN EXISTS (SELECT 1 FROM challenger_scores WHERE transaction_id = NEW.transaction_id"
    " AND model_version = NEW.model_version) BEGIN SELECT RAISE(IGNORE); END",
)
# The tables retention deletes from, with the trigger it lifts and puts back for each.
PRUNED: Final[dict[str, str]] = {
    **REFUSE_DELETE,
    "challenger_scores": _CHALLENGER_SCORES[3],
}

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (_DECISIONS, _LABELS, *_INDICES, *_IMMUTABLE),
    _COMPACT,
    _RETENTION,
    _REPORT_COLUMNS,
    _CURRENCY_COLUMNS,
    _LIST_CHANGES,
    _CHALLENGER_SCORES,
)
SCHEMA_VERSION: Final[int] = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new, empty database)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _refuse_newer(version: int, path: Path | str) -> None:
    if version > SCHEMA_VERSION:
        raise AuditStoreError(
            f"audit database {path} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this riskscore understands; upgrade riskscore to open it "
            "(opening it with older code could misread or corrupt it)"
        )


def migrate(conn: sqlite3.Connection, path: Path | str = "") -> int:
    """Bring the database on ``conn`` to :data:`SCHEMA_VERSION`; return the version found.

    ``conn`` must not be inside a transaction. Raises :class:`AuditStoreError` for a file
    written by newer code.
    """
    found = user_version(conn)
    _refuse_newer(found, path)
    if found == SCHEMA_VERSION:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while we waited for the write lock.
        found = user_version(conn)
        _refuse_newer(found, path)
        for steps in MIGRATIONS[found:]:
            for statement in steps:
                conn.execute(statement)
        # PRAGMA takes no bound parameters; SCHEMA_VERSION is our own integer.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
