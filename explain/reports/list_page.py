"""The decision list: one page of the decisions a filter selects (the filters of
``GET /decisions``, paged with its cursor), each row linking to that decision's report.
It is where the period report's counts and reasons lead."""

from __future__ import annotations

from urllib.parse import quote

from explain.records import DecisionRecord
from explain.reports.page_parts import Link, href, page, table, text
from explain.reports.query import PageRequest


def decision_href(transaction_id: str) -> str:
    """The decision's report, relative to the list (``/reports/decisions.html``)."""
    return f"decisions/{quote(transaction_id, safe='')}.html"


def _row(record: DecisionRecord) -> tuple[object, ...]:
    tx = record.transaction
    first = record.reasons[0].text if record.reasons else ""
    return (
        tx.timestamp.isoformat(),
        Link(tx.transaction_id, decision_href(tx.transaction_id)),
        tx.customer_id,
        f"{tx.amount:,.2f} {tx.currency or ''}".strip(),
        record.score,
        record.action,
        record.stage,
        "yes" if record.fallback else "no",
        first,
    )


def decision_list_page(
    records: list[DecisionRecord], request: PageRequest, next_cursor: str | None
) -> str:
    """One page of decisions, newest first, with a link to the next page."""
    params = request.query_params()
    described = ", ".join(f"{k} = {v}" for k, v in params.items()) or "all decisions"
    rows = table(
        [
            "event time",
            "transaction",
            "customer",
            "amount",
            "score",
            "action",
            "stage",
            "fell back",
            "first reason",
        ],
        (_row(r) for r in records),
    )
    pages = ""
    if next_cursor is not None:
        target = href("decisions.html", {**params, "limit": request.limit, "cursor": next_cursor})
        pages = f"<nav class='pages'><a rel='next' href='{text(target)}'>next page</a></nav>"
    empty = "" if records else "<p class='note'>No decision matches.</p>"
    note = (
        f"<p class='note'>Filters: {text(described)}. Newest first, {request.limit} a page; "
        "each transaction links to its decision report.</p>"
    )
    return page("Decisions", note + rows + empty + pages)
