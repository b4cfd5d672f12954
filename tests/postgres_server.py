"""A throwaway PostgreSQL server for tests: a real ``postgres`` from the distribution's
binaries, in a temporary directory, on a free port, stopped and removed afterwards.

PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` user
(created by the Debian package) or ``nobody``. Missing binaries are an error that names
the install command, never a skip: the tests of the PostgreSQL store must run in CI.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INSTALL = "apt-get install -y postgresql"
USER = "riskscore"


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start."""


def server_binaries() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    # Debian installs them off PATH, one directory per major version.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable(f"PostgreSQL server binaries not found: run `{INSTALL}`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
    raise PostgresUnavailable("running as root and no unprivileged user to run PostgreSQL")


@dataclass
class PostgresServer:
    """A running server; ``url(database)`` to connect to one of its databases."""

    port: int
    directory: Path
    bin_dir: Path
    prefix: list[str]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data")]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def start(self) -> None:
        result = self.pg_ctl(
            "-w", "-t", "60", "-l", str(self.directory / "server.log"), "start", check=False
        )
        if result.returncode != 0:
            log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(f"postgres did not start: {result.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop", check=False)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1, valid for a day: its own CA."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def throwaway_postgres(
    *, durable: bool = False, tls: tuple[Path, Path] | None = None
) -> Iterator[PostgresServer]:
    """Start a server; ``durable=False`` turns fsync off (tests: faster, and what they
    check does not depend on the disk), ``True`` keeps production settings (benchmarks).
    With ``tls`` (certificate, key) the server accepts TLS connections only."""
    bin_dir = server_binaries()
    prefix = _as_server_user()
    directory = Path(tempfile.mkdtemp(prefix="riskscore-pg-"))
    try:
        if prefix:
            shutil.chown(directory, user=prefix[2])
        data = directory / "data"
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
             "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        settings = {
            "port": str(free_port()),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{directory}'",
            "fsync": "on" if durable else "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
        }
        if tls is not None:
            for source, name in zip(tls, ("server.crt", "server.key"), strict=True):
                shutil.copy(source, data / name)
                (data / name).chmod(0o600)
                if prefix:
                    shutil.chown(data / name, user=prefix[2])
            settings.update(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
            (data / "pg_hba.conf").write_text(
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
            )
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        server = PostgresServer(int(settings["port"]), directory, bin_dir, prefix)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    except subprocess.CalledProcessError as exc:
        raise PostgresUnavailable(f"initdb failed: {exc.stderr}") from exc
    finally:
        shutil.rmtree(directory, ignore_errors=True)
