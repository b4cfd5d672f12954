"""The WHERE clause of a decision search, for either SQL store.

Both stores keep the same columns for what searches filter on, so the clause is the same
but for the parameter mark (``?`` in SQLite, ``%s`` in psycopg) and how the ``fallback``
flag is read (SQLite files of schema version 1 keep it only in their JSON).
"""

from __future__ import annotations

from typing import Any

from explain.audit.store import DecisionQuery
from features.schema import datetime_to_epoch_ms


def where(
    query: DecisionQuery,
    clauses: list[str] | None = None,
    params: list[Any] | None = None,
    *,
    mark: str = "?",
    fallback: str = "fallback",
) -> tuple[str, list[Any]]:
    """The WHERE clause (possibly empty) and its parameters for a query's filters, after
    ``clauses`` (written with ``mark``) and their ``params``.

    >>> where(DecisionQuery(action="decline", min_score=0.5), mark="%s")
    ('WHERE action = %s AND score >= %s', ['decline', 0.5])
    """
    if query.limit < 0:
        raise ValueError("limit must be >= 0")
    clauses = list(clauses or [])
    params = list(params or [])
    if query.start is not None:
        clauses.append(f"event_time_ms >= {mark}")
        params.append(datetime_to_epoch_ms(query.start))
    if query.end is not None:
        clauses.append(f"event_time_ms < {mark}")
        params.append(datetime_to_epoch_ms(query.end))
    for column in ("action", "customer_id", "stage"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    if query.min_score is not None:
        clauses.append(f"score >= {mark}")
        params.append(query.min_score)
    if query.fallback is not None:
        clauses.append(f"{fallback} = {mark}")
        params.append(int(query.fallback))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
