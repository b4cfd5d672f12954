"""The audit store's filesystem full: payments are refused with 503 audit_unavailable (never
answered without their record), nothing acknowledged is lost, and scoring resumes by
itself, without a restart, once there is space again.

Where the machine allows it (root: ``mount -t tmpfs -o size=...``) the store lives on a
real 4 MiB filesystem that the test fills with a file and later frees, so SQLite meets a
real ENOSPC. Elsewhere the test injects the error SQLite gives for it ("database or disk is
full") at the store's commit, through the writer's ``_commit_transaction`` (the one step
that makes a batch durable); the test's output says which of the two ran.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from explain.audit.sqlite_writer import SQLiteWriter
from tests.service.conftest import ClientFactory

SIZE = "4m"
CHUNK = b"\0" * 65_536
MAX_PAYMENTS = 3000  # a full disk is met long before this (the WAL grows with each commit)


class FullDisk:
    """Makes the store's filesystem full, and frees it again."""

    how = ""

    def fill(self) -> None:
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError


class RealFilesystem(FullDisk):
    how = f"a real {SIZE} tmpfs filled with a file"

    def __init__(self, mount: Path) -> None:
        self.filler = mount / "filler"

    def fill(self) -> None:
        # Unbuffered: a buffered file kept the part of the last chunk that did not fit and
        # failed again, with ENOSPC, when closed (whether it did depended on how the free
        # space fell against the chunk size, so the test failed now and then).
        with self.filler.open("wb", buffering=0) as out:
            try:
                while True:
                    out.write(CHUNK)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()


class InjectedError(FullDisk):
    how = "ENOSPC injected at the audit writer's commit (no permission to mount a filesystem)"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real = SQLiteWriter._commit_transaction

        def commit(writer: SQLiteWriter) -> None:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            real(writer)

        monkeypatch.setattr(SQLiteWriter, "_commit_transaction", commit)

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FullDisk]]:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
            capture_output=True,
        ).returncode
        == 0
    )
    disk: FullDisk = RealFilesystem(mount) if mounted else InjectedError(monkeypatch)
    print(f"audit store's full disk: {disk.how}")
    try:
        yield mount, disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _payment(n: int) -> dict[str, Any]:
    return {
        "transaction_id": f"full-{n}",
        "timestamp": f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "customer_id": f"c-{n % 7}",
        "terminal_id": f"t-{n % 11}",
        "amount": 10.0 + n % 90,
    }


async def test_a_full_disk_refuses_payments_loses_nothing_and_recovers_by_itself(
    make_client: ClientFactory, small_disk: tuple[Path, FullDisk]
) -> None:
    mount, disk = small_disk
    client = await make_client(data_dir=mount)
    acknowledged: dict[str, dict[str, Any]] = {}
    for n in range(20):  # some history before the disk fills
        response = await client.post("/score", json=_payment(n))
        assert response.status == 200
        acknowledged[f"full-{n}"] = await response.json()

    disk.fill()
    refused: list[int] = []
    n = 20
    while not refused and n < MAX_PAYMENTS:
        response = await client.post("/score", json=_payment(n))
        if response.status == 200:
            acknowledged[f"full-{n}"] = await response.json()
        else:
            assert response.status == 503, await response.text()
            error = (await response.json())["error"]
            assert error["type"] == "audit_unavailable"
            refused.append(n)
        n += 1
    assert refused, f"the store never reported a full disk in {MAX_PAYMENTS} payments"
    # Still full: a retry is refused the same way, and nothing is answered without a record.
    again = await client.post("/score", json=_payment(refused[0]))
    assert again.status == 503
    assert (await client.get(f"/decisions/full-{refused[0]}")).status == 404

    disk.free()
    # No restart: the same service takes the refused payment, then new ones.
    retry = await client.post("/score", json=_payment(refused[0]))
    assert retry.status == 200, await retry.text()
    acknowledged[f"full-{refused[0]}"] = await retry.json()
    later = await client.post("/score", json=_payment(n + 1))
    assert later.status == 200
    acknowledged[f"full-{n + 1}"] = await later.json()
    await client.close()

    # After a restart every acknowledged decision is there, each once, as answered.
    restarted = await make_client(data_dir=mount)
    for transaction_id, answer in acknowledged.items():
        record = await restarted.get(f"/decisions/{transaction_id}")
        assert record.status == 200, transaction_id
        assert (await record.json())["score"] == answer["score"]
    await restarted.close()
    with contextlib.closing(sqlite3.connect(mount / "audit.sqlite3")) as conn:
        ids = [row[0] for row in conn.execute("SELECT transaction_id FROM decisions")]
    assert sorted(ids) == sorted(acknowledged)
