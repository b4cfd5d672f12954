"""The ``redis`` feature-state backend: every entity's windows in Redis ≥ 7 (or Valkey).

Each payment is one pipelined round trip: one ``FCALL rs_update_2`` per hash tag (the
customer with the customer-at-terminal, then the terminal) and a ``SET NX`` of the small
lookup a later label uses to find the payment's entities. Each call updates its entities
atomically and answers with their window statistics; the features are then computed here
by the same compiled rule as the in-process engine (``aggregations.feature_value``), so
the two backends give the same values to the last bit (tested on the handbook).

The Redis Functions (``redis_state.lua``) are generic over the plan: its windows travel
with every call. A re-delivered payment changes nothing (each entity refuses an id it
holds, for as long as it retains the payment's event: the entity's longest window plus
its delay in event time). Idle entities expire after the plan's longest horizon of wall
time, as the in-process engine drops them.

The client is redis-py's connection with hiredis, driven directly: commands are packed
here once per payment (the constant arguments pre-encoded) and sent in one write, which
cuts the client's per-command overhead that the pipeline API costs. On Redis Cluster the
same calls go through redis-py's cluster pipeline instead, which routes each to its
slot's node (:mod:`features.redis_cluster_state`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from numba import njit

from features import window_kernels as k
from features.aggregations import feature_value
from features.definitions import DEFAULT_FEATURES, Entity, FeatureDefinition
from features.plan import compile_plan, output_table, spec_table
from features.redis_keys import KeyNames, plan_digest
from features.state import BatchUpdate, FeatureState, FeatureStateUnavailable, LabelOutcome
from features.url_redaction import redact

LIBRARY = "riskscore_state_2"
LIBRARY_FILES = ("redis_state.lua", "redis_sequences.lua")
# The two hash tags: a customer's call also carries the customer-at-terminal entity.
_CUSTOMER_TAG = (Entity.CUSTOMER, Entity.CUSTOMER_TERMINAL)
_TERMINAL_TAG = (Entity.TERMINAL,)
_LABEL_OUTCOMES = {1: LabelOutcome.APPLIED, 0: LabelOutcome.UNCHANGED, -1: LabelOutcome.UNKNOWN}


def library_code() -> str:
    """The Lua library shipped beside this module: the feature state's functions and the
    customers' sequences' (``redis_sequences.lua``), one library loaded and reloaded
    together."""
    files = importlib.resources.files("features")
    return "\n".join(files.joinpath(name).read_text() for name in LIBRARY_FILES)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


# A key's reply: its stored state (next, head, latest, then per window lo, hi, count, sum,
# sq, frauds), then its duplicate flag and the gap since its previous event.
_HEADER, _PER_WINDOW, _FIRST_STAT = 3, 6, 2


def reply_size(n_windows: int) -> int:
    return _HEADER + _PER_WINDOW * n_windows + 2


@njit(cache=True, nogil=True)
def fill_features(rows, offsets, gaps, flags, amount, local_ms, outputs, out, duplicate, replayed):
    """Feature values from the replies of a batch (``rows[r]``: payment r's replies, the
    state of kind ``kind`` at ``offsets[kind]``, its gap at ``gaps[kind]``); a payment
    some entity refused as a duplicate (its flag at ``flags[kind]`` is 1) gets NaN, one
    some entity gave back as it first applied it (flag 2) is marked ``replayed``."""
    for r in range(rows.shape[0]):
        for kind in range(flags.shape[0]):
            flag = rows[r, flags[kind]]
            if flag == 1.0:
                duplicate[r] = True
            elif flag == 2.0:
                replayed[r] = True
        if duplicate[r]:
            replayed[r] = False
            out[r, :] = np.nan
            continue
        for row in range(outputs.shape[0]):
            kind = outputs[row, k.O_KIND]
            code = outputs[row, k.O_CODE]
            column = outputs[row, k.O_COLUMN]
            if kind < 0:
                out[r, column] = feature_value(
                    code, 0.0, 0.0, 0.0, 0.0, amount[r], local_ms[r], 0, 0
                )
                continue
            i = offsets[kind] + 3 + 6 * outputs[row, k.O_SPEC] + 2
            out[r, column] = feature_value(
                code,
                rows[r, i],
                rows[r, i + 1],
                rows[r, i + 2],
                rows[r, i + 3],
                amount[r],
                local_ms[r],
                int(rows[r, gaps[kind]]),
                outputs[row, k.O_WINDOW],
            )


class RedisFeatureState(FeatureState):
    """Feature state shared by every process pointed at the same Redis database."""

    persistent = True

    def __init__(
        self,
        url: str,
        definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        try:
            import redis
        except ImportError:
            raise FeatureStateUnavailable(
                "RISKSCORE_FEATURE_STATE_URL names Redis, but the redis client is not "
                "installed: pip install 'riskscore[redis]'"
            ) from None
        self._redis = redis
        self.plan = compile_plan(definitions)
        self.feature_names = self.plan.names
        kinds = self.plan.entities()
        specs, n_specs, label_kinds = spec_table(self.plan, kinds)
        self._outputs = output_table(self.plan, kinds)
        self._n_specs = n_specs
        self._keys = KeyNames(plan_digest(self.plan))
        self._ttl_ms = self.plan.longest_horizon_ms
        self._shortest_horizon_ms = min(self.plan.horizon_ms(e) for e in self.plan.entities())
        # The calls of one payment, one per hash tag: the kinds each carries, in order.
        self._calls = [
            tuple(kinds.index(e) for e in tag if e in kinds)
            for tag in (_CUSTOMER_TAG, _TERMINAL_TAG)
        ]
        self._calls = [c for c in self._calls if c]
        self._kinds = kinds
        self._label_kinds = label_kinds

        def windows(kind: int) -> bytes:
            rows = specs[kind, : n_specs[kind]].tolist()
            return ";".join(",".join(str(v) for v in row) for row in rows).encode()

        ttl = str(self._ttl_ms).encode()
        # Per call: the kinds it carries and its constant tail (TTL, each key's windows),
        # as arguments (for a client that packs commands itself: the cluster's pipeline,
        # features/redis_cluster_state.py)...
        self._call_tails = [
            (call, [ttl] + [windows(kind) for kind in call]) for call in self._calls
        ]
        # ...and packed: the header (array length, FCALL, function, key count), the tail.
        self._packed_calls: list[tuple[tuple[int, ...], bytes, bytes]] = []
        for call, tail in self._call_tails:
            length = 3 + len(call) + 4 + len(tail)
            head = b"*%d\r\n" % length + _bulk(b"FCALL") + _bulk(b"rs_update_2")
            head += _bulk(str(len(call)).encode())
            self._packed_calls.append((call, head, b"".join(_bulk(p) for p in tail)))
        self._label_windows = [windows(kind) for kind in label_kinds]
        # A payment's replies, concatenated in call order: where each kind's state, its
        # duplicate flag and its gap sit.
        offsets = np.zeros(len(kinds), dtype=np.int64)
        at = 0
        for call in self._calls:
            for kind in call:
                offsets[kind] = at
                at += reply_size(int(n_specs[kind]))
        self._offsets = offsets
        self._gaps = offsets + [reply_size(int(n)) - 1 for n in n_specs[: len(kinds)]]
        self._flags = self._gaps - 1
        self._width = at
        self._watermark = k.NEVER
        # SET <lookup> <entities> NX PX <ttl>: the label's way back to the payment's entities.
        self._lookup_command = (b"*6\r\n" + _bulk(b"SET"), _bulk(b"NX") + _bulk(b"PX") + _bulk(ttl))
        self._builders = [_key_builder(self._keys, entity) for entity in kinds]
        self._url = url
        self._connection: Any = None
        try:
            self._client = self._connect(url, timeout_s)
            self.load_library()
            self._connection = self._dedicated_connection()
        except (redis.RedisError, redis.exceptions.RedisClusterException, ValueError) as exc:
            raise FeatureStateUnavailable(f"feature state at {redact(url)}: {exc}") from None
        # Compile (or load from cache) the feature kernel now, not on the first payment.
        fill_features(
            np.zeros((1, self._width)),
            self._offsets,
            self._gaps,
            self._flags,
            np.zeros(1),
            np.zeros(1, dtype=np.int64),
            self._outputs,
            np.empty((1, len(self.feature_names))),
            np.zeros(1, dtype=np.bool_),
            np.zeros(1, dtype=np.bool_),
        )

    def _connect(self, url: str, timeout_s: float) -> Any:
        """The client of one server (a cluster's subclass connects to all of them)."""
        return self._redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _dedicated_connection(self) -> Any:
        """The connection payments use: one, driven directly (see the module's doc)."""
        return self._client.connection_pool.get_connection()

    def load_library(self) -> None:
        """(Re)load the Redis Functions: FUNCTION LOAD REPLACE, idempotent."""
        self._client.function_load(library_code(), replace=True)

    # ---------------------------------------------------------------- updates

    def update_many(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        local_epoch_ms: Sequence[int],
        amounts: Sequence[float],
        digests: Sequence[str] | None = None,
    ) -> BatchUpdate:
        n = len(transaction_ids)
        replies = self._apply(
            transaction_ids, customer_ids, terminal_ids, epoch_ms, amounts, digests
        )
        # Each call answers raw little-endian doubles (see reply_size); the lookup's OK
        # (or nil: an earlier copy of the payment set it) is not needed.
        per_tx = len(self._calls) + (1 if self._label_kinds else 0)
        n_calls = len(self._calls)
        answers = [r for i, r in enumerate(replies) if i % per_tx < n_calls]
        packed = np.frombuffer(b"".join(answers), dtype="<f8")
        if len(packed) != n * self._width:
            raise FeatureStateUnavailable("feature state: a reply does not fit the feature plan")
        values = np.empty((n, len(self.feature_names)), dtype=np.float64)
        duplicate = np.zeros(n, dtype=np.bool_)
        replayed = np.zeros(n, dtype=np.bool_)
        fill_features(
            packed.reshape(n, self._width),
            self._offsets,
            self._gaps,
            self._flags,
            np.asarray(amounts, dtype=np.float64),
            np.asarray(local_epoch_ms, dtype=np.int64),
            self._outputs,
            values,
            duplicate,
            replayed,
        )
        refused = np.flatnonzero(duplicate).tolist() if duplicate.any() else []
        again = np.flatnonzero(replayed).tolist() if replayed.any() else []
        if n:
            latest = max(epoch_ms)
            if latest > self._watermark:
                self._watermark = int(latest)
        return BatchUpdate(values, refused, again)

    def _apply(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        amounts: Sequence[float],
        digests: Sequence[str] | None,
    ) -> list[Any]:
        """Send a batch's calls (per payment: one per hash tag, then the label lookup's
        SET) in one write and return every reply, in order."""
        n = len(transaction_ids)
        builders, calls, label_kinds = self._builders, self._packed_calls, self._label_kinds
        lookup_head, lookup_tail = self._lookup_command
        chunks: list[bytes] = []
        for i in range(n):
            tid = str(transaction_ids[i]).encode()
            customer, terminal = customer_ids[i], terminal_ids[i]
            entity_keys = [build(customer, terminal) for build in builders]
            t = b"%d" % epoch_ms[i]
            amount = repr(float(amounts[i])).encode()
            digest = b"" if digests is None else replay_digest(digests[i])
            # Transaction id, event time, amount and payload digest: each call's arguments
            # after its keys.
            dynamic = b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(tid),
                tid,
                len(t),
                t,
                len(amount),
                amount,
                len(digest),
                digest,
            )
            for call, head, tail in calls:
                chunks.append(head)
                for kind in call:
                    key = entity_keys[kind]
                    chunks.append(b"$%d\r\n%s\r\n" % (len(key), key))
                chunks.append(dynamic)
                chunks.append(tail)
            if label_kinds:
                lookup = self._keys.label_lookup(tid.decode())
                where = b"\n".join(entity_keys[kind] for kind in label_kinds)
                chunks.append(lookup_head)
                chunks.append(
                    b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(lookup), lookup, len(where), where)
                )
                chunks.append(lookup_tail)
        per_tx = len(calls) + (1 if label_kinds else 0)
        return self._round_trip(b"".join(chunks), n * per_tx)

    def run_commands(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        """Send commands in one round trip and read their replies, in order (the
        customers' sequences share the state's connection: :mod:`features.redis_sequences`)."""
        return self._round_trip(b"".join(pack_command(*c) for c in commands), len(commands))

    @property
    def keys(self) -> KeyNames:
        return self._keys

    def _round_trip(self, packed: bytes, expected: int) -> list[Any]:
        """Send the packed commands in one write and read every reply; reloads the
        library once if Redis lost it (a restart without persistence, FUNCTION FLUSH)."""
        for attempt in (1, 2):
            replies, missing_function = self._exchange(packed, expected)
            if not missing_function:
                return replies
            if attempt == 1:
                try:
                    self.load_library()
                except self._redis.RedisError as exc:
                    raise FeatureStateUnavailable(f"feature state: {exc}") from None
        raise FeatureStateUnavailable("feature state: the Redis Functions could not be loaded")

    def _exchange(self, packed: bytes, expected: int) -> tuple[list[Any], bool]:
        redis = self._redis
        connection = self._connection
        replies: list[Any] = []
        errors: list[str] = []
        try:
            connection.send_packed_command([packed], check_health=False)
            for _ in range(expected):
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:
                    replies.append(None)
                    errors.append(str(exc))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            connection.disconnect()
            raise FeatureStateUnavailable(f"feature state at {redact(self._url)}: {exc}") from None
        if errors:
            if all("function not found" in e.lower() for e in errors):
                return replies, True
            raise FeatureStateUnavailable(f"feature state: {errors[0]}")
        return replies, False

    # ----------------------------------------------------------------- labels

    def record_label(self, transaction_id: Hashable, is_fraud: bool) -> LabelOutcome:
        """Two round trips: the payment's entities, then ``FCALL rs_label_2`` on them."""
        if not self._label_kinds:
            return LabelOutcome.UNKNOWN
        (found,) = self.run_commands([(b"GET", self._keys.label_lookup(transaction_id))])
        if found is None:
            return LabelOutcome.UNKNOWN
        entity_keys = found.split(b"\n")
        tid, label = str(transaction_id).encode(), b"1" if is_fraud else b"0"
        # One call per hash tag, so that no call spans two Cluster slots (with the
        # default features only the terminal takes labels: one call).
        calls = []
        for group in _by_hash_tag(entity_keys):
            keys = [entity_keys[i] for i in group]
            windows = [self._label_windows[i] for i in group]
            calls.append(
                (b"FCALL", b"rs_label_2", str(len(keys)).encode(), *keys, tid, label, *windows)
            )
        # Each call answers its best outcome (applied > unchanged > not held).
        return _LABEL_OUTCOMES[max(int(r) for r in self.run_commands(calls))]

    # ------------------------------------------------------------- duplicates

    def seen(self, transaction_id: Hashable) -> bool:
        # Asking would cost a round trip per payment; the update refuses a duplicate
        # instead, and the scorer then asks the audit store.
        return False

    @property
    def dedupe_floor_ms(self) -> int:
        """Each entity holds a payment's id as long as it keeps the payment's event: at
        least its own horizon behind its latest payment. The shortest horizon of all
        kinds, behind the latest payment this process applied, is where no entity may
        have forgotten an id (and so none would count a retry again)."""
        return self._watermark - self._shortest_horizon_ms

    def problem(self) -> str | None:
        # The pool's own connection (thread-safe), not the one payments use.
        try:
            self._client.ping()
        except (self._redis.RedisError, self._redis.exceptions.RedisClusterException) as exc:
            return f"the feature state at {redact(self._url)} does not answer: {exc}"
        return None

    def close(self) -> None:
        if self._connection is not None:
            self._client.connection_pool.release(self._connection)
            self._connection = None
        self._client.close()


def replay_digest(digest: str) -> bytes:
    """The 16 bytes of a payload's SHA-256 (hex) that the state keeps with its id: what a
    re-delivery must match to get the payment's features back."""
    return bytes.fromhex(digest[:32])


def _by_hash_tag(keys: Sequence[bytes]) -> list[list[int]]:
    """The positions of ``keys`` grouped by their hash tag (the part in braces), in order."""
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        start = key.index(b"{")
        groups.setdefault(key[start : key.index(b"}", start)], []).append(i)
    return list(groups.values())


def _key_builder(keys: KeyNames, entity: Entity) -> Callable[[Hashable, Hashable], bytes]:
    """The key of one kind of entity from a payment's customer and terminal."""
    if entity is Entity.CUSTOMER:
        return lambda customer, _: keys.customer(customer)
    if entity is Entity.TERMINAL:
        return lambda _, terminal: keys.terminal(terminal)
    return keys.customer_terminal
