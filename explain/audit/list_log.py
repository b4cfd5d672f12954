"""The allow and block lists' history: an append-only log of changes (who, when, why),
the fourth small contract of the audit store, and its SQL shared by SQLite and PostgreSQL.

A list is never edited in place: adding or removing a value appends a change, and a
process's lists are the changes folded in order (``models/rules/lists.py``). The latest
change id is the lists' version, so a process polls one cheap ``max(id)`` and reads only
the changes after the last it applied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from features.schema import datetime_to_epoch_ms
from models.rules.lists import ListEntryChange, ListName, ListOp


@dataclass(frozen=True, slots=True)
class NewListChange:
    """A change to append; the store gives it its id and time."""

    list_name: ListName
    value: str
    op: ListOp
    reason: str
    actor: str  # who: an API key's digest or the command's user, never a key itself


class ListLog(ABC):
    """Changes of the allow and block lists, appended and read back in order."""

    @abstractmethod
    def append_list_changes(self, changes: Sequence[NewListChange]) -> list[ListEntryChange]:
        """Append these changes durably, in order, in one transaction; as stored."""

    @abstractmethod
    def list_changes_after(self, after_id: int) -> list[ListEntryChange]:
        """Every change with an id above ``after_id``, in id order."""

    @abstractmethod
    def list_version(self) -> int:
        """The latest change's id (0 when there is none): what a process polls."""


_COLUMNS = "id, list_name, value, op, reason, actor, changed_at_ms"


class SqlListLog(ListLog):
    """:class:`ListLog` in the ``list_changes`` table; a backend supplies its reads
    (``_fetchall``) and one write transaction (``_insert_list_changes``)."""

    mark: ClassVar[str]

    @abstractmethod
    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _insert_list_changes(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows of (list_name, value, op, reason, actor, changed_at_ms) in one
        transaction, durably; their ids."""

    def append_list_changes(self, changes: Sequence[NewListChange]) -> list[ListEntryChange]:
        now_ms = datetime_to_epoch_ms(datetime.now(UTC))
        rows = [(c.list_name, c.value, c.op, c.reason, c.actor, now_ms) for c in changes]
        ids = self._insert_list_changes(rows) if rows else []
        return [
            ListEntryChange(i, c.list_name, c.value, c.op, c.reason, c.actor, now_ms)
            for i, c in zip(ids, changes, strict=True)
        ]

    def list_changes_after(self, after_id: int) -> list[ListEntryChange]:
        rows = self._fetchall(
            f"SELECT {_COLUMNS} FROM list_changes WHERE id > {self.mark} ORDER BY id", (after_id,)
        )
        return [
            ListEntryChange(int(i), name, value, op, reason, actor, int(at))
            for i, name, value, op, reason, actor, at in rows
        ]

    def list_version(self) -> int:
        rows = self._fetchall("SELECT max(id) FROM list_changes")
        return int(rows[0][0] or 0)
