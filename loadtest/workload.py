"""What a run sends: transaction bodies read from a file, with their arrival offsets.

A file is a handbook-schema history (``.csv`` / ``.csv.gz``, read by ``features.data``) or
JSON lines (``.jsonl`` / ``.ndjson``, one ``/score`` body per line). Transaction ids are
rewritten per run (``lt-<token>-<id>``) so that a run never collides with decisions an
earlier run left in the audit store; ``same_ids`` keeps them, to test idempotent replays.
When a run needs more bodies than the file holds, it starts over with a new prefix.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from features.data import DataError, load_transactions

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


class WorkloadError(ValueError):
    """The transaction file cannot be replayed."""


@dataclass(frozen=True)
class Workload:
    """Bodies in file order and, for replays at the file's own pace, their time offsets."""

    bodies: list[dict[str, object]]
    offsets_s: list[float]  # seconds since the first body's timestamp; 0.0 when unknown
    raw: bool = False  # bodies are sent as they are (no transaction id to rewrite)

    def __len__(self) -> int:
        return len(self.bodies)


def load_workload(path: Path, raw: bool = False, limit: int | None = None) -> Workload:
    """Read ``path``; ``raw`` JSON lines are request bodies of another API (sent verbatim)."""
    if not path.is_file():
        raise WorkloadError(f"no such file: {path}")
    if path.name.endswith(JSON_LINES_SUFFIXES):
        bodies = _json_lines(path, limit)
    elif raw:
        raise WorkloadError(f"{path}: raw bodies come from a JSON lines file (.jsonl)")
    else:
        try:
            frame = load_transactions(path)
        except (DataError, OSError) as exc:
            raise WorkloadError(str(exc)) from exc
        bodies = list(itertools.islice(frame.payloads(), limit))
    if not bodies:
        raise WorkloadError(f"{path}: no transactions to send")
    if raw:
        return Workload(bodies, [0.0] * len(bodies), raw=True)
    for number, body in enumerate(bodies, start=1):
        if "transaction_id" not in body:
            raise WorkloadError(f"{path}: body {number} has no transaction_id")
    return Workload(bodies, _offsets(bodies, path), raw=False)


def _json_lines(path: Path, limit: int | None) -> list[dict[str, object]]:
    bodies: list[dict[str, object]] = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if limit is not None and len(bodies) >= limit:
                    break
                if not line.strip():
                    continue
                body = json.loads(line)
                if not isinstance(body, dict):
                    raise WorkloadError(f"{path}:{number}: expected a JSON object")
                bodies.append(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: not JSON lines ({exc})") from exc
    except OSError as exc:
        raise WorkloadError(f"{path}: {exc}") from exc
    return bodies


def _offsets(bodies: list[dict[str, object]], path: Path) -> list[float]:
    """Seconds from the first timestamp; replay at the file's pace needs them in order."""
    try:
        times = [datetime.fromisoformat(str(b["timestamp"])).timestamp() for b in bodies]
    except (KeyError, ValueError):
        return [0.0] * len(bodies)
    return [t - times[0] for t in times]


def run_token() -> str:
    """A short random token naming one run (in rewritten ids)."""
    return secrets.token_hex(4)


def body_stream(workload: Workload, token: str | None) -> Iterator[dict[str, object]]:
    """Bodies forever, in file order; with a ``token``, ids are ``lt-<token>[.<pass>]-<id>``
    (the pass number keeps ids unique when the file is replayed more than once)."""
    for cycle in itertools.count():
        for body in workload.bodies:
            if workload.raw or token is None:
                yield body
            else:
                prefix = f"lt-{token}-" if cycle == 0 else f"lt-{token}.{cycle}-"
                yield {**body, "transaction_id": f"{prefix}{body['transaction_id']}"}


def pace_offsets(workload: Workload, speedup: float) -> Iterator[float]:
    """Arrival offsets (s) at the file's own pace sped up ``speedup``×, forever: each
    replay of the file starts one mean gap after the previous one ended."""
    span = workload.offsets_s[-1]
    if span <= 0:
        raise WorkloadError("the file's timestamps do not advance; use --rate instead")
    period = span + span / max(1, len(workload) - 1)
    for cycle in itertools.count():
        for offset in workload.offsets_s:
            yield (cycle * period + offset) / speedup
