"""The bodies of the list endpoints (``PUT``/``DELETE /lists/{list}/{value}``, ``GET
/lists``), for the views and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.card_numbers import contains_card_number
from models.rules.lists import ListName

MAX_REASON_CHARS = 500


class ListChangeRequest(BaseModel):
    """Why a value is added to (or removed from) a list: recorded with the change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Why: a case number, a ticket, a sentence (one line; never a card number).",
    )

    @field_validator("reason")
    @classmethod
    def _no_card_number(cls, reason: str) -> str:
        # The reason is recorded for good (list changes are immutable) and quoted in every
        # decision the entry acts on: a card number there could never be removed.
        if contains_card_number(reason):
            raise ValueError("a reason cannot hold a card number; refer to the card by its token")
        return reason


class ListChangeResponse(BaseModel):
    """The change as recorded in the audit store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list: ListName
    value: str
    op: Literal["add", "remove"]
    reason: str
    actor: str = Field(description="Who: the admin key's SHA-256 digest (never the key).")
    changed_at: datetime
    version: int = Field(description="The lists' version after this change (its change id).")


class ListEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    reason: str


class ListsResponse(BaseModel):
    """Every list's entries as this process applies them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(description="The latest change applied (0: none yet).")
    lists: dict[ListName, list[ListEntry]]
