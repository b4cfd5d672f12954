"""`riskscore state rebuild`: a checkpoint for the in-process state, or Redis refilled,
from the audit store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from explain.audit.sqlite_store import SQLiteAuditStore
from features.plan import compile_plan
from features.redis_keys import KeyNames, plan_digest
from service.app_keys import WARM_START
from service.checkpointing import CHECKPOINT_FILE
from tests.redis_cluster import RedisTarget
from tests.service.conftest import ClientFactory
from tests.service.test_checkpoint_restart import tx


def _state_rebuild(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "state", "rebuild"],
        env={**os.environ, "RISKSCORE_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def _three_payments(make_client: ClientFactory) -> None:
    first = await make_client(checkpoint_interval_s=0)  # no checkpoint of its own
    for i in range(3):
        assert (await first.post("/score", json=tx(i))).status == 200
    await first.close()


async def test_rebuild_writes_the_checkpoint_the_next_start_loads(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    await _three_payments(make_client)
    data_dir = tmp_path / "var"
    assert not (data_dir / CHECKPOINT_FILE).exists()
    done = _state_rebuild(data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 payments applied to the checkpoint")
    second = await make_client()
    assert await second.app[WARM_START] == 0  # all three came from the checkpoint
    await second.close()


async def test_rebuild_refills_an_empty_redis_once(
    make_client: ClientFactory, tmp_path: Path, redis_target: RedisTarget
) -> None:
    """On one server and on a 3-primary cluster (``redis+cluster://``)."""
    await _three_payments(make_client)
    url = redis_target.url(7)
    redis_target.flush(7)
    done = _state_rebuild(tmp_path / "var", RISKSCORE_FEATURE_STATE_URL=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 payments applied to the Redis")
    keys = KeyNames(plan_digest(compile_plan()))
    with redis_target.client(7) as client:
        assert client.exists(keys.customer("c-1")) and client.exists(keys.terminal("t-1"))
        assert client.llen(keys.customer_sequence("c-1")) == 3
        again = _state_rebuild(tmp_path / "var", RISKSCORE_FEATURE_STATE_URL=url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("0 payments applied")  # already there: refused by id
        assert client.llen(keys.customer_sequence("c-1")) == 3


def test_an_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    SQLiteAuditStore(tmp_path / "var" / "audit.sqlite3").close()
    done = _state_rebuild(tmp_path / "var", RISKSCORE_FEATURE_STATE_URL="redis://127.0.0.1:1/0")
    assert done.returncode != 0
    assert "cannot reach the feature state" in done.stderr
    assert "Traceback" not in done.stderr
