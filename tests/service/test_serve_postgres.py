"""`riskscore serve` on the PostgreSQL audit store: a real server process on a real
PostgreSQL (started by the fixtures), scoring, reading back after a restart of either."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.store import AuditStoreError
from tests.explain.test_sqlite_audit_store import make_record
from tests.postgres_server import self_signed_certificate, throwaway_postgres
from tests.service.test_serve_process import _request, _serve_expecting_failure, _serving, _stop

TX = {
    "transaction_id": "pg-1",
    "timestamp": "2025-06-02T14:03:27Z",
    "customer_id": "c-1",
    "terminal_id": "t-1",
    "amount": 120.0,
}


def test_serve_records_in_postgres_and_reads_back_after_restart(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {"RISKSCORE_AUDIT_URL": postgres_url, "RISKSCORE_KAFKA": "off"}
    with _serving(tmp_path, extra_env=env) as (base, process):
        status, decision = _request(f"{base}/score", TX)
        assert status == 200
        assert _request(f"{base}/decisions/pg-1")[1]["score"] == decision["score"]
        output = _stop(process)
    assert "audit store postgresql://" in output
    assert not (tmp_path / "audit.sqlite3").exists()  # nothing went to the SQLite file
    with _serving(tmp_path, extra_env=env) as (base, process):
        status, record = _request(f"{base}/decisions/pg-1")
        assert status == 200 and record["score"] == decision["score"]
        # A retry after the restart is answered from the store, not decided again.
        status, again = _request(f"{base}/score", TX)
        assert status == 200 and again["score"] == decision["score"]
        _stop(process)


def test_a_postgres_restart_gives_503_then_recovers_losing_nothing(tmp_path: Path) -> None:
    with throwaway_postgres() as server:
        env = {"RISKSCORE_AUDIT_URL": server.url(), "RISKSCORE_KAFKA": "off"}
        with _serving(tmp_path, extra_env=env) as (base, process):
            assert _request(f"{base}/score", TX)[0] == 200
            server.stop("immediate")  # as a crash: no clean shutdown of the database
            second = {**TX, "transaction_id": "pg-2"}
            status, body = _request(f"{base}/score", second)
            assert status == 503, body
            assert body["error"]["type"] == "audit_unavailable"
            status, body = _request(f"{base}/decisions/pg-1")
            assert status == 503 and body["error"]["type"] == "audit_unavailable"
            server.start()
            # The client retries with the same id, as the 503 tells it to.
            assert _request(f"{base}/score", second)[0] == 200
            for tid in ("pg-1", "pg-2"):
                assert _request(f"{base}/decisions/{tid}")[0] == 200
            # Restarted while nobody asked: the next payment does not pay for it.
            server.stop("immediate")
            server.start()
            assert _request(f"{base}/score", {**TX, "transaction_id": "pg-3"})[0] == 200
            assert _request(f"{base}/decisions/pg-3")[0] == 200
            _stop(process)


def test_serve_explains_an_unreachable_audit_database(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = _serve_expecting_failure(
        RISKSCORE_DATA_DIR=str(tmp_path),
        RISKSCORE_KAFKA="off",
        RISKSCORE_AUDIT_URL=f"postgresql://audit:s3cret-pw@127.0.0.1:{port}/riskscore",
    )
    assert result.returncode == 2
    assert "cannot open the audit store" in result.stderr
    assert "audit:***@127.0.0.1" in result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_tls_settings_pass_through_the_url(tmp_path: Path) -> None:
    """A server that takes TLS connections only, with a self-signed certificate: the URL's
    libpq parameters reach the client (verify-full against that certificate works, a
    wrong CA is refused with one line, no password)."""
    cert, key = self_signed_certificate(tmp_path)
    with throwaway_postgres(tls=(cert, key)) as server:
        plain = server.url()
        # The server refuses connections without TLS, so every one below is encrypted.
        with pytest.raises(AuditStoreError, match="cannot connect"):
            PostgresAuditStore(plain + "?sslmode=disable", connect_timeout_s=5)
        verified = f"{plain}?sslmode=verify-full&sslrootcert={cert}"
        with PostgresAuditStore(verified) as store:
            store.submit(make_record("tls-1")).result(timeout=20)
            assert store.get("tls-1") is not None
        (tmp_path / "other").mkdir()
        other_ca, _ = self_signed_certificate(tmp_path / "other")
        with pytest.raises(AuditStoreError, match="certificate verify failed"):
            PostgresAuditStore(f"{plain}?sslmode=verify-full&sslrootcert={other_ca}")


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_psycopg_is_needed_only_when_configured(tmp_path: Path) -> None:
    # The default configuration builds its whole app without importing psycopg.
    unused = _python(
        "import sys\n"
        "from service.app import build_scorer\n"
        "from service.settings import Settings\n"
        "build_scorer(Settings.of(kafka='off', sequence='off')).store.close()\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n",
        RISKSCORE_DATA_DIR=str(tmp_path),
    )
    assert unused.returncode == 0, unused.stderr
    # Configured without the extra installed: one line naming it.
    missing = _python(
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if the postgres extra were not installed\n"
        "from service.cli import main\n"
        "raise SystemExit(main(['serve']))\n",
        RISKSCORE_DATA_DIR=str(tmp_path),
        RISKSCORE_KAFKA="off",
        RISKSCORE_AUDIT_URL="postgresql://audit@127.0.0.1:1/riskscore",
    )
    assert missing.returncode == 2
    assert "pip install 'riskscore[postgres]'" in missing.stderr
    assert "Traceback" not in missing.stderr
