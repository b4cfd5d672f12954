"""The ``redis`` feature-state backend on Redis Cluster (or Valkey Cluster).

The same Redis Functions, keys and replies as on one server
(:mod:`features.redis_state`); what changes is who carries the calls. redis-py's cluster
client does all the routing: it maps each key to its slot and each slot to its primary,
follows ``MOVED``/``ASK`` after a resharding or a failover, and refreshes its map of the
cluster. Nothing here computes a slot to pick a node.

Every call names keys of one hash tag only (``features/redis_keys.py``: the customer and
the customer-at-terminal under ``{c:<customer>}``, the terminal under ``{t:<terminal>}``,
the label lookup under ``{x:<transaction>}``), so each lands whole on the node of that
slot and none is cross-slot. A batch of payments (one payment, or many) goes out as one
cluster pipeline: redis-py groups the commands by node, writes every node's commands
before reading any reply, so the batch costs one round trip to each node it touches,
in parallel, not one per command. It finds an ``FCALL``'s keys from the key
specification Redis gives for the command (``numkeys`` then the keys) without asking
the server (``COMMAND GETKEYS``) per command.

The Redis Functions are loaded into every primary at start-up (``FUNCTION LOAD`` goes to
all primaries), and replicas copy them from their primary, so a failover keeps them. A
primary that lacks them (added later, or restarted empty) answers "function not found":
the client then refreshes its map of the cluster, loads the library into every primary
and sends the refused calls again, once; a refused call changed nothing, so resending
it is safe.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from features.definitions import DEFAULT_FEATURES, FeatureDefinition
from features.redis_cluster_url import cluster_client, is_cluster_url
from features.redis_state import RedisFeatureState, replay_digest
from features.state import FeatureStateUnavailable
from features.url_redaction import redact


def open_redis_state(
    url: str,
    definitions: tuple[FeatureDefinition, ...] = DEFAULT_FEATURES,
    *,
    timeout_s: float = 5.0,
) -> RedisFeatureState:
    """The Redis feature state a URL names: a cluster (``redis+cluster://``,
    ``rediss+cluster://``) or one server (``redis://``, ``rediss://``)."""
    backend = RedisClusterFeatureState if is_cluster_url(url) else RedisFeatureState
    return backend(url, definitions, timeout_s=timeout_s)


class RedisClusterFeatureState(RedisFeatureState):
    """Feature state shared by every process pointed at the same Redis Cluster."""

    def _connect(self, url: str, timeout_s: float) -> Any:
        return cluster_client(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def _dedicated_connection(self) -> Any:
        return None  # each node's connections are the cluster client's

    def _apply(
        self,
        transaction_ids: Sequence[Hashable],
        customer_ids: Sequence[Hashable],
        terminal_ids: Sequence[Hashable],
        epoch_ms: Sequence[int],
        amounts: Sequence[float],
        digests: Sequence[str] | None,
    ) -> list[Any]:
        """The batch's calls as one cluster pipeline: per payment one ``FCALL`` per hash
        tag, then the label lookup's ``SET NX``, in the order the single server gets them."""
        lookup_options = (b"NX", b"PX", str(self._ttl_ms).encode())
        commands: list[tuple[bytes, ...]] = []
        for i in range(len(transaction_ids)):
            tid = str(transaction_ids[i]).encode()
            entity_keys = [build(customer_ids[i], terminal_ids[i]) for build in self._builders]
            dynamic = (
                tid,
                b"%d" % epoch_ms[i],
                repr(float(amounts[i])).encode(),
                b"" if digests is None else replay_digest(digests[i]),
            )
            for call, tail in self._call_tails:
                keys = [entity_keys[kind] for kind in call]
                commands.append(
                    (b"FCALL", b"rs_update_2", b"%d" % len(keys), *keys, *dynamic, *tail)
                )
            if self._label_kinds:
                where = b"\n".join(entity_keys[kind] for kind in self._label_kinds)
                lookup = self._keys.label_lookup(tid.decode())
                commands.append((b"SET", lookup, where, *lookup_options))
        return self.run_commands(commands)

    def run_commands(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        """One cluster pipeline; the calls a primary refused for want of the functions
        are sent again once, after loading them."""
        replies = self._pipeline(commands)
        missing = [i for i, r in enumerate(replies) if _function_not_found(r)]
        if missing:
            try:
                self._client.nodes_manager.initialize()  # a primary may be new to us
                self.load_library()
            except Exception as exc:  # any failure of the cluster client: one message
                raise FeatureStateUnavailable(f"feature state: {exc}") from None
            again = self._pipeline([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            if all(_function_not_found(e) for e in errors):
                raise FeatureStateUnavailable(
                    "feature state: the Redis Functions could not be loaded"
                )
            raise FeatureStateUnavailable(f"feature state: {errors[0]}")
        return replies

    def _pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        pipeline = self._client.pipeline(transaction=False)
        for name, *arguments in commands:
            # The client looks the command's name up in its tables as text.
            pipeline.execute_command(name.decode(), *arguments)
        try:
            return list(pipeline.execute(raise_on_error=False))
        except Exception as exc:  # connection lost, cluster down, no node reachable
            raise FeatureStateUnavailable(f"feature state at {redact(self._url)}: {exc}") from None

    def close(self) -> None:
        self._client.close()


def _function_not_found(reply: Any) -> bool:
    return isinstance(reply, Exception) and "function not found" in str(reply).lower()
