"""The allow and block lists as one process holds them: folded from the append-only log of
list changes (``explain/audit/list_log.py``), replaced whole when a change arrives so a
decision reads one consistent state without a lock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ListName = Literal[
    "blocked_customers", "blocked_terminals", "allowed_customers", "allowed_terminals"
]
LIST_NAMES: tuple[ListName, ...] = (
    "blocked_customers",
    "blocked_terminals",
    "allowed_customers",
    "allowed_terminals",
)
ListOp = Literal["add", "remove"]


@dataclass(frozen=True, slots=True)
class ListEntryChange:
    """One change of a list, as the log holds it: what, who, when, why."""

    id: int  # the order of the changes; the latest id is the lists' version
    list_name: ListName
    value: str
    op: ListOp
    reason: str
    actor: str
    changed_at_ms: int


_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class ListState:
    """Each list's entries (value → the reason it was added) after changes up to ``version``."""

    version: int = 0
    entries: Mapping[ListName, Mapping[str, str]] = field(
        default_factory=lambda: {name: _EMPTY for name in LIST_NAMES}
    )

    def applied(self, changes: Iterable[ListEntryChange]) -> ListState:
        """A new state with these changes (in id order) applied; this one is unchanged."""
        lists = {name: dict(values) for name, values in self.entries.items()}
        version = self.version
        for change in changes:
            if change.id <= version:
                continue  # already applied (a change read twice around a poll)
            if change.op == "add":
                lists[change.list_name][change.value] = change.reason
            else:
                lists[change.list_name].pop(change.value, None)
            version = change.id
        return ListState(version, {name: MappingProxyType(v) for name, v in lists.items()})

    def size(self) -> dict[str, int]:
        return {name: len(values) for name, values in self.entries.items()}
