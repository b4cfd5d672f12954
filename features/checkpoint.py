"""A checkpoint of the in-process feature state, so a restart replays only what came after.

Without one, the ``memory`` backend rebuilds at start-up by replaying every stored payment
any window can still see (37 days). A checkpoint is the engine's arrays and id maps in
one file: written atomically (a temporary file, fsync, rename, fsync of the directory),
checked on load (SHA-256 of the payload, and the feature plan's digest: a changed plan
never reads an old checkpoint), and it says up to which event time it covers the stream
(``covers_ms``, the latest payment applied) and up to where in the audit store's order of
writing it holds every payment (``written_mark``: a restart replays what was written after
it, however old its event time). The payload is NumPy's ``.npz`` of plain
arrays, loaded with ``allow_pickle=False``; ids travel as JSON. Nothing is unpickled.

This module reads the engine's private fields on purpose: it is the engine's own
serialisation, kept out of ``online.py`` so that file keeps one job.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features import window_kernels as k
from features.definitions import DEFAULT_FEATURES, FeatureDefinition
from features.online import OnlineFeatureEngine
from features.redis_keys import plan_digest

MAGIC = b"RISKSCORE-FEATURE-CHECKPOINT 1\n"


class CheckpointError(ValueError):
    """The checkpoint cannot be used (damaged, another plan, another format): rebuild
    from the audit store instead."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint covers: payments up to ``covers_ms`` (event time), written at
    ``written_at`` (Unix seconds); every payment the audit store had written up to
    ``written_mark`` (None: not known, a checkpoint of an older version)."""

    covers_ms: int
    written_at: float
    payments: int
    size_bytes: int
    written_mark: int | None = None


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def _from_json(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode())


def _key(value: Any) -> Any:
    """JSON gave a customer-at-terminal key back as a list: the engine's key is a tuple."""
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Captured:
    """The engine's state at one instant, as copies the engine no longer touches: numpy
    arrays copied, the id maps, label index and expiry heap copied shallowly (their keys
    and values are immutable: ids, ints, tuples). Cheap enough to take on the event loop,
    where the state changes; turning it into arrays and JSON (:func:`to_arrays`), the
    expensive part, can then run in a thread."""

    meta: np.ndarray
    bounds: np.ndarray
    stats: np.ndarray
    pool: np.ndarray
    pool_meta: np.ndarray
    scalars: np.ndarray
    free_slots: list[int]
    ids: list[dict[Any, int]]
    label_index: dict[Any, tuple[tuple[int, int, int], ...]]
    label_kinds: int
    expiry: list[tuple[int, int, Any]]


def capture(engine: OnlineFeatureEngine) -> Captured:
    """Copies of the engine's state (see :class:`Captured`): C-level copies only."""
    e = engine
    used = int(e._pool_meta[k.USED])
    return Captured(
        meta=e._meta[: e._next_slot].copy(),
        bounds=e._bounds[: e._next_slot].copy(),
        stats=e._stats[: e._next_slot].copy(),
        pool=e._pool[:, :used].copy(),
        pool_meta=e._pool_meta.copy(),
        scalars=np.array([e._next_slot, e._watermark, e._updates], dtype=np.int64),
        free_slots=list(e._free_slots),
        ids=[dict(ids) for ids in e._ids],  # insertion order kept: it is the eviction order
        label_index=dict(e._label_index),
        label_kinds=len(e._label_kinds),
        expiry=list(e._label_expiry),
    )


def to_arrays(c: Captured) -> dict[str, np.ndarray]:
    """The captured state as plain arrays (the checkpoint file's contents)."""
    label_ids = list(c.label_index)
    refs = np.array([c.label_index[t] for t in label_ids], dtype=np.int64).reshape(
        len(label_ids), c.label_kinds, 3
    )
    return {
        "meta": c.meta,
        "bounds": c.bounds,
        "stats": c.stats,
        "pool": c.pool,
        "pool_meta": c.pool_meta,
        "scalars": c.scalars,
        "free_slots": np.array(c.free_slots, dtype=np.int64),
        "id_slots": np.array([s for ids in c.ids for s in ids.values()], dtype=np.int64),
        "id_counts": np.array([len(ids) for ids in c.ids], dtype=np.int64),
        "id_keys": _json_array([key for ids in c.ids for key in ids]),
        "label_ids": _json_array(label_ids),
        "label_refs": refs,
        "expiry_times": np.array([x[0] for x in c.expiry], dtype=np.int64),
        "expiry_order": np.array([x[1] for x in c.expiry], dtype=np.int64),
        "expiry_ids": _json_array([x[2] for x in c.expiry]),
    }


def snapshot(engine: OnlineFeatureEngine) -> dict[str, np.ndarray]:
    """The engine's state as plain arrays (copies: the engine may move on at once)."""
    return to_arrays(capture(engine))


def restore(arrays: dict[str, np.ndarray], e: OnlineFeatureEngine) -> None:
    """Put the state of :func:`snapshot` into ``e``, a fresh engine of the same plan."""
    next_slot, watermark, updates = (int(v) for v in arrays["scalars"])
    while len(e._meta) < next_slot:
        e._grow_slots()
    e._meta[:next_slot] = arrays["meta"]
    e._bounds[:next_slot] = arrays["bounds"]
    e._stats[:next_slot] = arrays["stats"]
    pool = arrays["pool"]
    e._pool = np.zeros((3, max(e._pool.shape[1], 2 * pool.shape[1])), dtype=np.float64)
    e._pool[:, : pool.shape[1]] = pool
    e._pool_meta[:] = arrays["pool_meta"]
    e._next_slot, e._watermark, e._updates = next_slot, watermark, updates
    e._free_slots = arrays["free_slots"].tolist()
    keys = [_key(v) for v in _from_json(arrays["id_keys"])]
    slots = arrays["id_slots"].tolist()
    at = 0
    for kind, count in enumerate(arrays["id_counts"].tolist()):
        e._ids[kind] = OrderedDict(zip(keys[at : at + count], slots[at : at + count], strict=True))
        at += count
    label_ids = _from_json(arrays["label_ids"])
    refs = arrays["label_refs"].tolist()
    e._label_index = {
        t: tuple(tuple(r) for r in ref) for t, ref in zip(label_ids, refs, strict=True)
    }
    # Saved in heap order, so still a heap.
    e._label_expiry = list(
        zip(
            arrays["expiry_times"].tolist(),
            arrays["expiry_order"].tolist(),
            _from_json(arrays["expiry_ids"]),
            strict=True,
        )
    )


def write_checkpoint(
    engine: OnlineFeatureEngine, path: Path, written_mark: int | None = None
) -> CheckpointInfo:
    """Snapshot ``engine`` and write it to ``path`` atomically; the old file stays whole
    until the new one is on disk. ``written_mark``: the audit store's, read before the
    snapshot (every payment written up to it is in the engine)."""
    return write_snapshot(snapshot(engine), plan_digest(engine.plan), path, written_mark)


def write_snapshot(
    arrays: dict[str, np.ndarray], digest: str, path: Path, written_mark: int | None = None
) -> CheckpointInfo:
    """The file part of :func:`write_checkpoint` (may run off the event loop: it touches
    only the copies)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # (names, arrays): numpy-stubs
    payload = buffer.getvalue()
    _, watermark, updates = (int(v) for v in arrays["scalars"])
    written_at = time.time()
    header = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "plan": digest,
        "covers_ms": watermark,
        "payments": updates,
        "written_at": written_at,
        "payload_bytes": len(payload),
        "written_mark": written_mark,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        f.write(MAGIC + json.dumps(header).encode() + b"\n")
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return CheckpointInfo(watermark, written_at, updates, len(payload), written_mark)


def read_checkpoint(
    path: Path, definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES
) -> tuple[OnlineFeatureEngine, CheckpointInfo]:
    """The engine a checkpoint holds (see :func:`load_checkpoint`)."""
    engine = OnlineFeatureEngine(definitions)
    return engine, load_checkpoint(path, engine)


HEADER_FIELDS = frozenset(
    {"payload_bytes", "sha256", "plan", "covers_ms", "written_at", "payments"}
)


def load_checkpoint(path: Path, engine: OnlineFeatureEngine) -> CheckpointInfo:
    """Fill ``engine`` (fresh) from a checkpoint; :class:`CheckpointError` saying why it
    cannot be used (then rebuild from the audit store), leaving ``engine`` untouched."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a riskscore feature checkpoint")
    end = data.index(b"\n", len(MAGIC)) if b"\n" in data[len(MAGIC) :] else -1
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError:
        raise CheckpointError(f"{path}: damaged header") from None
    # The checksum covers the payload, not the header: its shape is checked here, so a
    # damaged one is passed over (a full replay) rather than stopping the warm start.
    if not isinstance(header, dict) or not header.keys() >= HEADER_FIELDS:
        raise CheckpointError(f"{path}: damaged header")
    try:
        for name in ("payload_bytes", "covers_ms", "payments"):
            int(header[name])
        float(header["written_at"])
        mark = header.get("written_mark")
        written_mark = None if mark is None else int(mark)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: damaged header") from None
    payload = data[end + 1 :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path}: truncated ({len(payload)} of {header['payload_bytes']} bytes)"
        )
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch (the file is damaged)")
    if header["plan"] != plan_digest(engine.plan):
        raise CheckpointError(f"{path} was written for another feature plan")
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    info = CheckpointInfo(
        int(header["covers_ms"]),
        float(header["written_at"]),
        int(header["payments"]),
        len(payload),
        written_mark,
    )
    restore(arrays, engine)
    return info
