"""The compliance query: filters as clients write them, a stable cursor, paging a store.

HTTP query parameters and the command line both arrive here as strings; one model
validates them, so both refuse the same bad input with the same words.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)

from explain.audit.store import DecisionQuery, PageKey, ReportQueries
from explain.records import Action, DecisionRecord, Stage
from models.train.label_policy import DEFAULT_LABEL_DELAY_DAYS

DEFAULT_PAGE = 100
MAX_PAGE = 1000
# Exports and summaries read the store in pages this big: bounded memory, and no read
# snapshot held open for the whole export (which would stop the WAL from being checkpointed).
STREAM_PAGE = 500


class InvalidCursor(ValueError):
    """A cursor that this service did not hand out."""


def _instant(value: object, *, end: bool) -> object:
    """A date stands for its whole UTC day (``to`` then means the next midnight, so a
    period's last day is included); a datetime without an offset is UTC, as for
    transactions."""
    if isinstance(value, str) and len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value  # the datetime validator explains what is wrong
        try:
            return datetime.combine(day + timedelta(days=1 if end else 0), time(0), tzinfo=UTC)
        except OverflowError:
            # 9999-12-31 as `to`: its day would end after the last date there is.
            raise ValueError("date out of range") from None
    if isinstance(value, str):
        # ISO 8601 only: pydantic would also read "0.5" or "1714521600" as seconds since
        # 1970, which nobody writing a report period means (and the schema does not say).
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    return value


class Period(BaseModel):
    """A period of event time as clients write it (both ends optional), validated once for
    every report that covers one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: datetime | None = Field(
        default=None, alias="from", description="Event time from (inclusive); date or ISO 8601."
    )
    end: datetime | None = Field(
        default=None,
        alias="to",
        description="Event time to: exclusive for a datetime, the whole day for a date.",
    )

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> object:
        return _instant(value, end=False)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: object) -> object:
        return _instant(value, end=True)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _ordered(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        made = handler(data)
        if made.start is not None and made.end is not None and made.start >= made.end:
            # Quoted as the client wrote them: `to=2024-05-01` is not "2024-05-02 00:00"
            # to its writer, even if that is the exclusive bound it stands for.
            given = data if isinstance(data, dict) else {}
            start = given.get("from", given.get("start", made.start))
            end = given.get("to", given.get("end", made.end))
            raise ValueError(f"'from' ({start}) must be before 'to' ({end})")
        return made

    def period(self) -> str:
        """The covered period in words, for report titles."""
        start = self.start.isoformat() if self.start else "the beginning"
        end = self.end.isoformat() if self.end else "now"
        return f"{start} to {end}"

    def query_params(self) -> dict[str, str]:
        """The filters as query parameters (what a link to the same selection carries)."""
        params: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            if name in ("limit", "cursor"):
                continue
            if isinstance(value, datetime):
                value = value.astimezone(UTC).replace(tzinfo=None).isoformat()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            params[name] = str(value)
        return params


class DecisionFilter(Period):
    """Which decisions a search, export or summary covers. Every filter is optional."""

    action: Action | None = None
    customer_id: str | None = Field(default=None, min_length=1, max_length=128)
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    stage: Stage | None = None
    fallback: bool | None = None

    def query(self, limit: int) -> DecisionQuery:
        return DecisionQuery(
            start=self.start,
            end=self.end,
            action=self.action,
            customer_id=self.customer_id,
            limit=limit,
            stage=self.stage,
            fallback=self.fallback,
            min_score=self.min_score,
        )


class ChallengerPeriod(Period):
    """The challenger report's query: a period and, optionally, which challenger version
    (by default the one that scored most of the period's decisions)."""

    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The challenger's model_version (as its scores record it).",
    )
    label_delay_days: int = Field(
        default=DEFAULT_LABEL_DELAY_DAYS,
        ge=0,
        le=3650,
        description="Days after which an unlabelled payment the champion did not decline "
        "counts as legitimate (as riskscore train --from-store --label-delay-days).",
    )


class ListFilter(DecisionFilter):
    """A filter for lists of decisions (search, exports, the decision list page), which
    may also ask for decisions with one feature among their top reasons."""

    reason: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_]{1,128}$",
        description="A reason code (feature name) among the decision's top reasons.",
    )


class PageRequest(ListFilter):
    """A filter plus where to continue and how many to return."""

    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _decodable(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value


def encode_cursor(key: PageKey) -> str:
    """An opaque, URL-safe token for the position after ``key``."""
    raw = f"{key.event_time_ms}:{key.transaction_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, transaction_id = raw.split(":", 1)
        return PageKey(int(millis), transaction_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("not a cursor returned by this API") from None


def page_key(record: DecisionRecord) -> PageKey:
    return PageKey(record.transaction.epoch_ms, record.transaction_id)


def _has_reason(record: DecisionRecord, code: str) -> bool:
    return any(reason.code == code for reason in record.reasons)


def _matching(
    store: ReportQueries, selection: DecisionFilter, after: PageKey | None, wanted: int
) -> list[DecisionRecord]:
    """Up to ``wanted`` decisions after ``after``, newest first. A reason is not a column
    a store can filter on, so that filter reads the store's pages and keeps the matches
    (the other filters narrow what the store returns first)."""
    reason = getattr(selection, "reason", None)
    if reason is None:
        return store.page(selection.query(wanted), after)
    found: list[DecisionRecord] = []
    query = selection.query(STREAM_PAGE)
    while len(found) < wanted:
        records = store.page(query, after)
        found += [r for r in records if _has_reason(r, reason)]
        if len(records) < STREAM_PAGE:
            break
        after = page_key(records[-1])
    return found[:wanted]


def read_page(
    store: ReportQueries, request: PageRequest
) -> tuple[list[DecisionRecord], str | None]:
    """One page, newest first, and the cursor of the next one (None on the last page)."""
    after = None if request.cursor is None else decode_cursor(request.cursor)
    # One more than asked: tells whether a next page exists without an empty last page.
    records = _matching(store, request, after, request.limit + 1)
    if len(records) <= request.limit:
        return records, None
    records = records[: request.limit]
    return records, encode_cursor(page_key(records[-1]))


def iter_pages(
    store: ReportQueries, selection: DecisionFilter, page_size: int = STREAM_PAGE
) -> Iterator[list[DecisionRecord]]:
    """Every matching decision, newest first, one page at a time."""
    after: PageKey | None = None
    while True:
        records = _matching(store, selection, after, page_size)
        if records:
            yield records
        if len(records) < page_size:
            return
        after = page_key(records[-1])


def filter_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters with empty values dropped: ``?action=`` means no action filter."""
    return {key: value for key, value in params.items() if value != ""}
