"""One process's copy of the allow and block lists, kept up with the audit store's log.

Every change is appended to the store first (``explain/audit/list_log.py``) and only then
read back into the process: the process that took a change reads it at once (the next
payment sees it), every other process (``serve --workers``, consumers) within one poll
interval (RISKSCORE_LISTS_POLL_MS) — each poll is one ``max(id)`` read, and the changes
after the last applied id are read only when it moved. The policy's lists are replaced
whole, so a decision never sees half a change.

A poll that fails (the store briefly unreachable) leaves the lists as they were and is
retried at the next interval; ``riskscore_lists_last_refresh_timestamp_seconds`` says how
old this process's copy is, so an operator can alert on a process that stopped following.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from explain.audit.list_log import ListLog
from models.rules.policy import Policy

log = logging.getLogger(__name__)


class ListSync:
    """Brings ``policy.lists`` up to the store's latest change."""

    def __init__(
        self, store: ListLog, policy: Policy, registry: CollectorRegistry | None = None
    ) -> None:
        self._store = store
        self._policy = policy
        # Reads and swaps one at a time, so the version only moves forward.
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        registry = registry or CollectorRegistry()
        self._version = Gauge(
            "riskscore_lists_version",
            "The allow and block lists' version this process applies (the last change id).",
            registry=registry,
        )
        self._version.set_function(lambda: self._policy.lists.version)
        self._refreshed = Gauge(
            "riskscore_lists_last_refresh_timestamp_seconds",
            "When this process last read the list changes from the audit store (Unix time; "
            "0 before the first read). Alert when it lags by more than a few poll intervals.",
            registry=registry,
        )
        self._failures = Counter(
            "riskscore_lists_poll_failures",
            "Polls of the list changes that failed (the lists stay as they were).",
            registry=registry,
        )

    @property
    def version(self) -> int:
        return self._policy.lists.version

    def refresh(self) -> int:
        """Apply every change after the current version (blocking: it reads the store)."""
        with self._lock:
            current = self._policy.lists
            changes = self._store.list_changes_after(current.version)
            if changes:
                self._policy.lists = current.applied(changes)
            self._refreshed.set(time.time())
            return self._policy.lists.version

    def refresh_if_changed(self) -> bool:
        """Poll the store's version; refresh when it moved. Whether it did."""
        if self._store.list_version() == self._policy.lists.version:
            self._refreshed.set(time.time())  # read, and nothing new: the copy is current
            return False
        self.refresh()
        return True

    def start(self, interval_s: float) -> None:
        """Poll every ``interval_s`` in the background (off the event loop)."""
        self._task = asyncio.create_task(self._poll(interval_s), name="riskscore-list-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await asyncio.to_thread(self.refresh_if_changed):
                    log.info("allow and block lists now at version %d", self.version)
            except Exception:
                self._failures.inc()
                # The store may be briefly unreachable: the lists stay as they were, and
                # the next poll tries again.
                log.warning("could not read list changes; retrying", exc_info=True)
