"""HTTP views of the compliance role: decision search, exports and report pages.

Store reads, summaries and chart drawing are blocking work: each runs in a worker thread,
so a long report never stalls scoring on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from explain.audit.store import AuditStore
from explain.records import DecisionRecord, LabelRecord
from explain.reports.challenger_page import challenger_page
from explain.reports.challenger_source import read_comparison
from explain.reports.export import CONTENT_TYPES, ExportFormat, export_lines
from explain.reports.html import decision_page
from explain.reports.list_page import decision_list_page
from explain.reports.pdf import PAGE_FORMATS, PDF_TYPE, PageFormat, PdfUnavailable, to_pdf
from explain.reports.period_page import summary_page
from explain.reports.query import (
    ChallengerPeriod,
    DecisionFilter,
    ListFilter,
    PageRequest,
    filter_fields,
    iter_pages,
    read_page,
)
from explain.reports.summary import summarize
from models.artifacts import Manifest, load_manifest
from models.errors import ArtifactError
from service.api_models import DecisionDetail
from service.errors import InvalidInput, NotFound, PdfNotAvailable

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
HTML_TYPE = "text/html"


def page_format(request: web.Request) -> PageFormat:
    """``?format=`` of a report page: html (the default) or pdf."""
    value = request.query.get("format", "html")
    if value not in PAGE_FORMATS or len(request.query.getall("format", [])) > 1:
        raise InvalidInput(
            "invalid query: format",
            [{"field": "format", "message": f"one of {', '.join(PAGE_FORMATS)}"}],
        )
    return "pdf" if value == "pdf" else "html"


def query_model(model: type[M], request: web.Request, ignore: tuple[str, ...] = ()) -> M:
    """The query string validated as ``model``; a repeated parameter is refused rather
    than one of its values silently winning. ``ignore`` names parameters read elsewhere."""
    params: dict[str, Any] = {}
    for key, value in request.query.items():
        if key in ignore:
            continue
        if key in params:
            raise InvalidInput(
                f"query parameter {key!r} given more than once",
                [{"field": key, "message": "give this parameter once"}],
            )
        params[key] = value
    try:
        return model.model_validate(filter_fields(params))
    except ValidationError as exc:
        fields = InvalidInput.from_validation(exc).fields or []
        for field in fields:
            if field["field"] == "body":  # the rule across parameters: 'from' before 'to'
                field["field"] = "from"
        names = ", ".join(dict.fromkeys(f["field"] for f in fields))
        raise InvalidInput(f"invalid query: {names}", fields) from None


class ReportViews:
    """Compliance endpoints over the audit store and the served artifact's manifest."""

    def __init__(
        self,
        store: AuditStore,
        artifact_dir: Path | Callable[[], Path],
        complete: Callable[[DecisionRecord], DecisionRecord] | None = None,
        version_manifest: Callable[[str], Manifest] | None = None,
    ) -> None:
        self._store = store
        # The manifest of a given model version (a decision's), when the served artifact
        # is one of several versions; by default the served artifact's.
        self._version_manifest = version_manifest
        # A callable: the served model's artifact, which a promotion changes.
        self._artifact_dir = artifact_dir if callable(artifact_dir) else lambda: artifact_dir
        # Computes a stored record's second-stage attributions (they are not stored).
        self._complete = complete or (lambda record: record)

    def _manifest(self) -> Manifest | None:
        # Read per report (a few KB), so a model swapped on disk is what the report shows.
        try:
            return load_manifest(self._artifact_dir())
        except ArtifactError:
            log.warning("no readable manifest in %s for a report", self._artifact_dir())
            return None

    def _manifest_of(self, model_version: str) -> Manifest | None:
        if self._version_manifest is None:
            return self._manifest()
        try:
            return self._version_manifest(model_version)
        except ArtifactError as exc:
            log.warning(
                "no readable manifest of model version %s for a report: %s", model_version, exc
            )
            return None

    async def search(self, request: web.Request) -> web.Response:
        page = query_model(PageRequest, request)
        records, cursor = await asyncio.to_thread(read_page, self._store, page)
        details = await asyncio.to_thread(self._details, records)
        body = {"decisions": details, "next_cursor": cursor}
        return web.json_response(body)

    def _details(self, records: list[DecisionRecord]) -> list[dict[str, Any]]:
        """Found decisions as ``GET /decisions/{id}`` shows each: every key, its labels
        (read for the whole page in one query)."""
        labels = self._store.labels_by_transaction([r.transaction_id for r in records])
        return [self._detail(record, labels[record.transaction_id]) for record in records]

    def _detail(self, record: DecisionRecord, labels: list[LabelRecord]) -> dict[str, Any]:
        if record.sequence is not None:
            record = self._complete(record)
        return DecisionDetail(**dict(record), labels=labels).model_dump(mode="json")

    async def export(self, request: web.Request) -> web.StreamResponse:
        # One view for /reports/decisions.csv and .jsonl: the path's extension decides.
        fmt: ExportFormat = "csv" if request.path.endswith(".csv") else "jsonl"
        selection = query_model(ListFilter, request)
        chunks = export_lines(iter_pages(self._store, selection), fmt)
        # The first page is read before the status is sent: a store that cannot be read
        # still gets its proper 503 rather than a cut-off 200.
        first = await asyncio.to_thread(next, chunks, None)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{CONTENT_TYPES[fmt]}; charset=utf-8",
                "Content-Disposition": f'attachment; filename="decisions.{fmt}"',
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        lines = 0
        try:
            chunk = first
            while chunk is not None:
                await response.write("".join(chunk).encode())
                lines += len(chunk)
                chunk = await asyncio.to_thread(next, chunks, None)
        except ConnectionResetError:
            # The client went away (a closed tab, a timeout, a cancelled download): its
            # choice, not a fault of the service, and nobody is left to answer.
            log.info("export cancelled by the client after %d lines of %s", lines, fmt)
            return response
        except Exception:
            # The status is already sent: cut the connection so the client sees a broken
            # transfer, never a silently truncated file that looks complete.
            log.exception("export failed part-way; connection aborted")
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def decision_report(self, request: web.Request) -> web.Response:
        fmt = page_format(request)
        query_model(_NoFilters, request, ignore=("format",))
        transaction_id = request.match_info["transaction_id"]
        record = await asyncio.to_thread(self._store.get, transaction_id)
        if record is None:
            raise NotFound(f"no decision recorded for transaction {transaction_id!r}")
        record = await asyncio.to_thread(self._complete, record)
        labels = await asyncio.to_thread(self._store.labels, transaction_id)
        manifest = await asyncio.to_thread(self._manifest_of, record.model_version)
        page = await asyncio.to_thread(decision_page, record, labels, manifest)
        return await _rendered(page, fmt, f"decision-{transaction_id}")

    async def summary_report(self, request: web.Request) -> web.Response:
        fmt = page_format(request)
        selection = query_model(DecisionFilter, request, ignore=("format",))
        manifest = self._manifest()
        reference = manifest.feature_distributions if manifest else None
        summary = await asyncio.to_thread(summarize, self._store, selection, reference)
        page = await asyncio.to_thread(summary_page, summary, selection, manifest)
        return await _rendered(page, fmt, "period-report")

    async def challenger_report(self, request: web.Request) -> web.Response:
        fmt = page_format(request)
        period = query_model(ChallengerPeriod, request, ignore=("format",))
        reading = await asyncio.to_thread(read_comparison, self._store, period)
        page = await asyncio.to_thread(
            challenger_page, reading.comparison, period, reading.versions
        )
        return await _rendered(page, fmt, "challenger-report")

    async def decision_list(self, request: web.Request) -> web.Response:
        page_request = query_model(PageRequest, request)
        records, cursor = await asyncio.to_thread(read_page, self._store, page_request)
        page = await asyncio.to_thread(decision_list_page, records, page_request, cursor)
        return web.Response(text=page, content_type=HTML_TYPE)


class _NoFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _rendered(page: str, fmt: PageFormat, name: str) -> web.Response:
    if fmt == "html":
        return web.Response(text=page, content_type=HTML_TYPE)
    try:
        pdf = await asyncio.to_thread(to_pdf, page)
    except PdfUnavailable as exc:
        raise PdfNotAvailable(str(exc)) from None
    # The name is for the file a browser saves; quotes and odd characters are dropped.
    safe = "".join(c for c in name if c.isalnum() or c in "-_.")[:100] or "report"
    return web.Response(
        body=pdf,
        content_type=PDF_TYPE,
        headers={"Content-Disposition": f'inline; filename="{safe}.pdf"'},
    )


__all__ = ["ReportViews"]
