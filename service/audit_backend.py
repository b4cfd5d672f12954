"""Which audit store a process opens: the SQLite file (default, one machine) or
PostgreSQL (``RISKSCORE_AUDIT_URL=postgresql://…``, many processes). The scorer, the
reports and the warm start see only the :class:`~explain.audit.store.AuditStore` contract.

PostgreSQL's module (and psycopg) is imported only when the URL is set.
"""

from __future__ import annotations

from pathlib import Path

from explain.audit.store import AuditStore
from features.url_redaction import redact
from service.settings import AuditSettings, Settings


def describe(settings: Settings) -> str:
    """Where the audit store is, for logs (never a password)."""
    url = settings.audit.url
    if url is None:
        return str(settings.audit_path)
    return redact(url.get_secret_value())


def open_audit_store(settings: Settings, sqlite_file: Path | None = None) -> AuditStore:
    """The configured store (``sqlite_file`` overrides both the URL and the data
    directory); raises :class:`~explain.audit.store.AuditStoreError` with one line."""
    audit: AuditSettings = settings.audit
    if audit.url is None or sqlite_file is not None:
        from explain.audit.sqlite_store import SQLiteAuditStore

        return SQLiteAuditStore(
            sqlite_file or settings.audit_path,
            commit_window_ms=audit.commit_window_ms,
            max_batch=audit.max_batch,
            busy_timeout_ms=audit.busy_timeout_ms,
        )
    from explain.audit.postgres_store import PostgresAuditStore

    return PostgresAuditStore(
        audit.url.get_secret_value(),
        commit_window_ms=audit.commit_window_ms,
        max_batch=audit.max_batch,
        connect_timeout_s=audit.connect_timeout_s,
        statement_timeout_ms=audit.statement_timeout_ms,
    )
