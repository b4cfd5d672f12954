"""Connections to the PostgreSQL audit database: psycopg imported only when one is asked
for, URLs shown without their password, and the timeouts every connection carries.
"""

from __future__ import annotations

from typing import Any

from explain.audit.store import AuditStoreError
from features.url_redaction import redact, without_secrets

INSTALL_HINT = "install riskscore's postgres extra: pip install 'riskscore[postgres]'"


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise AuditStoreError(
            f"RISKSCORE_AUDIT_URL is PostgreSQL but psycopg is missing: {INSTALL_HINT}"
        ) from None
    return psycopg


def connect(
    url: str, *, connect_timeout_s: int, statement_timeout_ms: int, autocommit: bool
) -> Any:
    """A psycopg connection with timeouts and durable commits (``synchronous_commit=on``
    whatever the server's default: a decision is answered only once it survives a crash)."""
    psycopg = psycopg_module()
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=connect_timeout_s,
            options=f"-c statement_timeout={statement_timeout_ms} -c synchronous_commit=on",
            application_name="riskscore",
        )
    except psycopg.Error as exc:
        raise AuditStoreError(
            f"cannot connect to the audit database {redact(url)}: {_one_line(exc, url)}"
        ) from None


def _one_line(exc: BaseException, url: str) -> str:
    # A malformed URL can be echoed back by libpq: never let its password through.
    return without_secrets(" ".join(str(exc).split()), url)
