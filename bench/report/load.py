"""Runs from the database as a pandas DataFrame (optionally filtered by a SQL WHERE clause)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from bench.errors import BenchError
from bench.store.session import get_engine


def load_runs(db_url: str, where: str | None = None) -> pd.DataFrame:
    """All rows of `runs` (filtered by `where`); an empty frame if the table does not exist."""
    engine = get_engine(db_url)
    if not inspect(engine).has_table("runs"):
        return pd.DataFrame()
    query = "SELECT * FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    try:
        with engine.connect() as connection:
            return pd.read_sql(text(query), connection)
    except SQLAlchemyError as error:
        raise BenchError(
            f"--where {where!r}: {str(error.orig if hasattr(error, 'orig') else error).splitlines()[0]}"
        ) from None
