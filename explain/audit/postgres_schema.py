"""The PostgreSQL audit database's layout: the same columns as the SQLite file, partitioned
by month of event time, immutable by the database's own triggers.

``decisions`` and ``labels`` are partitioned by range of event time (labels: of receipt),
one partition per calendar month (UTC), named ``decisions_YYYYMM``. Partitions are created
when first needed — by the writer before it inserts into a new month, and at open for the
current and next month — not as a default partition: rows in a default partition would
forbid creating the partition for their month later, and could only leave by a DELETE.
Retention drops whole partitions (``drop_partitions_before``): the one way a row leaves.

A partitioned table's primary key must contain the partition key, so the database cannot
itself hold a transaction id unique across months; the writer does (it takes a lock per
id before it checks, see ``postgres_writer.py``), and the search index on
``transaction_id`` makes that check one index probe per partition.

Creation is idempotent and serialised by an advisory lock, so two processes opening one
empty database at once do not race. The version is kept in ``riskscore_audit_schema``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from explain.audit.store import AuditStoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final[int] = 4
# pg_advisory_xact_lock key for schema changes and partition creation ("rsaudit").
DDL_LOCK: Final[int] = 0x7273617564697400
PARTITIONED: Final[tuple[str, ...]] = ("decisions", "labels", "challenger_scores")

_TABLES = (
    """
CREATE TABLE IF NOT EXISTS riskscore_audit_schema (
    version integer NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS explanation_schemas (
    id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE CHECK (length(key) = 32),
    schema_json text NOT NULL
)
""",
    # seq: the order of writing, as SQLite's rowid (ties in event time keep it).
    """
CREATE TABLE IF NOT EXISTS decisions (
    transaction_id text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 128),
    request_sha256 text NOT NULL CHECK (length(request_sha256) = 64),
    event_time_ms bigint NOT NULL,
    local_time_ms bigint NOT NULL,
    decided_at_ms bigint NOT NULL,
    customer_id text NOT NULL,
    terminal_id text NOT NULL,
    amount double precision NOT NULL CHECK (amount > 0),
    action text NOT NULL CHECK (action IN ('approve', 'review', 'decline')),
    stage text NOT NULL,
    score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    model_version text NOT NULL,
    record_json text NOT NULL DEFAULT '' CHECK (record_json = ''),
    fallback smallint NOT NULL CHECK (fallback IN (0, 1)),
    record bytea NOT NULL,
    -- What period reports aggregate (as in the SQLite store's schema version 4).
    latency_us bigint,
    reason_positions text,
    fallback_reason text,
    seq bigserial NOT NULL,
    PRIMARY KEY (transaction_id, event_time_ms)
) PARTITION BY RANGE (event_time_ms)
""",
    # Every partition retention dropped: the one deletion path leaves its own record.
    """
CREATE TABLE IF NOT EXISTS retention_log (
    id bigserial PRIMARY KEY,
    dropped_at timestamptz NOT NULL DEFAULT now(),
    partition_name text NOT NULL,
    row_count bigint NOT NULL,
    cutoff_ms bigint NOT NULL
)
""",
    # labelled_at_ms holds the effective time (receipt when the label carried none);
    # record_json keeps what was actually sent; id is the order of arrival.
    """
CREATE TABLE IF NOT EXISTS labels (
    id bigserial NOT NULL,
    transaction_id text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 128),
    is_fraud smallint NOT NULL CHECK (is_fraud IN (0, 1)),
    labelled_at_ms bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    record_json text NOT NULL,
    PRIMARY KEY (id, received_at_ms)
) PARTITION BY RANGE (received_at_ms)
""",
)

# Version 2: the payment as received when its amount was converted to the reference
# currency (features/currency.py), as in the SQLite store's schema version 5; NULL for
# rows written before and for payments taken as they came (no rate table).
_CURRENCY_COLUMNS = (
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS original_amount double precision",
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS original_currency text",
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS rate_version text",
)

# Version 3: the allow and block lists' history, append-only (as the SQLite store's
# schema version 6; explain/audit/list_log.py).
_LIST_CHANGES = (
    """
CREATE TABLE IF NOT EXISTS list_changes (
    id bigserial PRIMARY KEY,
    list_name text NOT NULL CHECK (list_name IN ('blocked_customers', 'blocked_terminals',
        'allowed_customers', 'allowed_terminals')),
    value text NOT NULL CHECK (length(value) BETWEEN 1 AND 128),
    op text NOT NULL CHECK (op IN ('add', 'remove')),
    reason text NOT NULL,
    actor text NOT NULL,
    changed_at_ms bigint NOT NULL
)
""",
)

# Version 4: the shadow challenger's verdicts (as the SQLite store's schema version 7;
# explain/audit/challenger_log.py), partitioned by the month of their decision's event
# time, so retention drops them with the decisions' partition of the same month. The key
# holds the partition key, as a partitioned table's must; a decision's event time is
# fixed, so (transaction id, version) stays unique. The writer inserts with ON CONFLICT
# DO NOTHING: the first verdict stands.
_CHALLENGER_SCORES = (
    """
CREATE TABLE IF NOT EXISTS challenger_scores (
    transaction_id text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 128),
    model_version text NOT NULL CHECK (length(model_version) BETWEEN 1 AND 128),
    event_time_ms bigint NOT NULL,
    score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    action text NOT NULL CHECK (action IN ('approve', 'review', 'decline')),
    review_threshold double precision NOT NULL,
    decline_threshold double precision NOT NULL,
    reasons_json text NOT NULL,
    explanation_json text NOT NULL,
    sequence_score double precision CHECK (sequence_score >= 0 AND sequence_score <= 1),
    scored_at_ms bigint NOT NULL,
    PRIMARY KEY (transaction_id, model_version, event_time_ms)
) PARTITION BY RANGE (event_time_ms)
""",
    "CREATE INDEX IF NOT EXISTS challenger_scores_by_time"
    " ON challenger_scores (event_time_ms, transaction_id, model_version)",
)
_IMMUTABLE_TABLES = (
    "decisions",
    "labels",
    "explanation_schemas",
    "retention_log",
    "list_changes",
    "challenger_scores",
)

# Each search, export, report and warm-start query is served by one of these (they are
# created on every partition).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS decisions_by_id ON decisions (transaction_id)",
    "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (event_time_ms, seq)",
    "CREATE INDEX IF NOT EXISTS decisions_by_time_id"
    " ON decisions (event_time_ms DESC, transaction_id DESC)",
    "CREATE INDEX IF NOT EXISTS decisions_by_action ON decisions (action, event_time_ms)",
    "CREATE INDEX IF NOT EXISTS decisions_by_customer"
    " ON decisions (customer_id, event_time_ms, seq)",
    "CREATE INDEX IF NOT EXISTS labels_by_transaction"
    " ON labels (transaction_id, received_at_ms, id)",
)

# History must not be rewritable even by hand-written SQL: UPDATE, DELETE and TRUNCATE are
# refused by the database (row triggers are cloned onto every partition; TRUNCATE triggers
# are per table, so each partition gets its own when created). Only DROP gets past them:
# retention, logged.
_IMMUTABLE = (
    """
CREATE OR REPLACE FUNCTION riskscore_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit % are immutable: % refused', TG_ARGV[0], TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$
""",
    *(
        f"CREATE OR REPLACE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION riskscore_audit_refuse('{table}')"
        for table in _IMMUTABLE_TABLES
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION riskscore_audit_refuse('{table}')"
        for table in _IMMUTABLE_TABLES
    ),
)


def month_of(epoch_ms: int) -> int:
    """The month holding an instant, as YYYYMM (UTC).

    >>> month_of(1709294400000)  # 2024-03-01T12:00Z
    202403
    """
    moment = datetime.fromtimestamp(epoch_ms / 1000.0, UTC)
    return moment.year * 100 + moment.month


def month_bounds(month: int) -> tuple[int, int]:
    """[start, end) of a YYYYMM month in epoch milliseconds.

    >>> month_bounds(202412)
    (1733011200000, 1735689600000)
    """
    year, number = divmod(month, 100)
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def partition_name(table: str, month: int) -> str:
    return f"{table}_{month:06d}"


def migrate(conn: Any) -> None:
    """Create (or check) the schema on an autocommit psycopg connection."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        for statement in _TABLES:
            conn.execute(statement)
        row = conn.execute("SELECT max(version) FROM riskscore_audit_schema").fetchone()
        found = row[0]
        if found is not None and found > SCHEMA_VERSION:
            raise AuditStoreError(
                f"audit database has schema version {found}, newer than the "
                f"{SCHEMA_VERSION} this riskscore understands; upgrade riskscore to open it"
            )
        if found == SCHEMA_VERSION:
            return
        for statement in (
            *_CURRENCY_COLUMNS,
            *_LIST_CHANGES,
            *_CHALLENGER_SCORES,
            *_INDEXES,
            *_IMMUTABLE,
        ):
            conn.execute(statement)
        conn.execute("INSERT INTO riskscore_audit_schema (version) VALUES (%s)", (SCHEMA_VERSION,))


def existing_months(conn: Any, table: str) -> set[int]:
    """The months that have a partition of ``table``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (table,),
    ).fetchall()
    months = set()
    for (name,) in rows:
        suffix = name.rsplit("_", 1)[-1]
        if suffix.isdigit():
            months.add(int(suffix))
    return months


def create_partitions(conn: Any, table: str, months: Iterable[int]) -> None:
    """Create the partitions of ``table`` for these months that do not exist yet, each in
    its own committed transaction (a writer's batch then only inserts)."""
    for month in sorted(set(months)):
        start, end = month_bounds(month)
        name = partition_name(table, month)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            if month in existing_months(conn, table):
                continue
            conn.execute(
                f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({start}) TO ({end})"
            )
            conn.execute(
                f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION riskscore_audit_refuse('{table}')"
            )


def drop_partitions_before(conn: Any, cutoff_ms: int) -> list[tuple[str, str, int]]:
    """Drop every partition whose whole month ends at or before ``cutoff_ms``; what was
    dropped as (table, partition, rows). Each drop is logged (the process log, and the
    ``retention_log`` table in the same transaction as the drop): this is the one way
    rows leave the audit store."""
    dropped = []
    for table in PARTITIONED:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            for month in sorted(existing_months(conn, table)):
                if month_bounds(month)[1] > cutoff_ms:
                    continue
                name = partition_name(table, month)
                rows = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                conn.execute(f"DROP TABLE {name}")
                conn.execute(
                    "INSERT INTO retention_log (partition_name, row_count, cutoff_ms)"
                    " VALUES (%s, %s, %s)",
                    (name, rows, cutoff_ms),
                )
                log.warning("retention: dropped partition %s (%d rows)", name, rows)
                dropped.append((table, name, int(rows)))
    return dropped
