"""HTTP views of the allow and block lists: ``PUT``/``DELETE /lists/{list}/{value}`` (admin
key; who, when and why appended to the audit store's log) and ``GET /lists``.

A change is durable in the store before it is answered, and this process applies it
before answering too, so the next payment it scores sees it; other processes see it
within RISKSCORE_LISTS_POLL_MS (``list_sync.py``). The value in the URL has passed the
card-number policy already (``card_number_guard.py``): a card number is refused or
stored as its token, as everywhere else.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError

from explain.audit.list_log import ListLog, NewListChange
from models.rules.lists import LIST_NAMES, ListName, ListOp
from models.rules.policy import Policy
from service.errors import Forbidden, InvalidInput, NotFound
from service.handlers import json_response, read_json
from service.list_models import ListChangeRequest, ListChangeResponse, ListEntry, ListsResponse
from service.list_sync import ListSync
from service.middleware import ACTOR
from service.settings import Settings

_VALUE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class ListViews:
    def __init__(self, store: ListLog, sync: ListSync, policy: Policy, settings: Settings) -> None:
        self._store = store
        self._sync = sync
        self._policy = policy
        self._settings = settings

    async def put_entry(self, request: web.Request) -> web.Response:
        return await self._change(request, "add")

    async def delete_entry(self, request: web.Request) -> web.Response:
        return await self._change(request, "remove")

    async def lists(self, request: web.Request) -> web.Response:
        self._need_admin_keys()
        # What this process applies now (changes made elsewhere arrive at its next poll).
        state = self._policy.lists
        return json_response(
            ListsResponse(
                version=state.version,
                lists={
                    name: [ListEntry(value=v, reason=r) for v, r in sorted(entries.items())]
                    for name, entries in state.entries.items()
                },
            )
        )

    def _need_admin_keys(self) -> None:
        # With no admin key configured nobody may change what decides payments: an open
        # allow list would approve anything.
        if not self._settings.http.admin_api_keys:
            raise Forbidden("the lists need an admin API key: set RISKSCORE_ADMIN_API_KEYS")

    async def _change(self, request: web.Request, op: ListOp) -> web.Response:
        self._need_admin_keys()
        name = _list_name(request.match_info["list"])
        value = request.match_info["value"]
        if not _VALUE.match(value) or value in (".", ".."):
            raise InvalidInput(
                "invalid list value",
                [{"field": "value", "message": "1 to 128 printable characters, not . or .."}],
            )
        reason = await self._reason(request, required=op == "add")
        await asyncio.to_thread(self._sync.refresh)
        if op == "remove" and value not in self._policy.lists.entries[name]:
            raise NotFound(f"{value!r} is not on the {name} list")
        actor = request.get(ACTOR, "admin key")
        change = NewListChange(name, value, op, reason, actor)
        (stored,) = await asyncio.to_thread(self._store.append_list_changes, [change])
        await asyncio.to_thread(self._sync.refresh)
        return json_response(
            ListChangeResponse(
                list=name,
                value=value,
                op=op,
                reason=reason,
                actor=actor,
                changed_at=datetime.fromtimestamp(stored.changed_at_ms / 1000, UTC),
                version=stored.id,
            )
        )

    async def _reason(self, request: web.Request, required: bool) -> str:
        if not required and not request.body_exists:
            return ""
        data = await read_json(request, self._settings.http.max_body_bytes)
        if not required and data == {}:
            return ""  # a removal's reason is optional, in an empty object as with no body
        try:
            return ListChangeRequest.model_validate(data).reason
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None


def _list_name(given: str) -> ListName:
    for name in LIST_NAMES:
        if given == name:
            return name
    raise NotFound(f"no list {given!r}; the lists are {', '.join(LIST_NAMES)}")
