"""Query results read by column name: a test says which column it checks, not where it sits in the SELECT."""

from __future__ import annotations

from typing import Any

from bench.store.sql import read_only_query


def query(db_url: str, statement: str) -> list[dict[str, Any]]:
    """Rows of a read-only query as {column: value} dicts (columns named as the SELECT names them)."""
    columns, rows = read_only_query(db_url, statement)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def only(db_url: str, statement: str) -> Any:
    """The single value of a one-row, one-column query (e.g. a count)."""
    (row,) = read_only_query(db_url, statement)[1]
    (value,) = row
    return value
