"""Read-only SQL over the results database (`bench sql`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bench.errors import BenchError
from bench.store.session import check_url


def read_only_engine(db_url: str):  # noqa: ANN202 - sqlalchemy Engine
    """An engine that cannot write, and the statement that guards each transaction (or None)."""
    url = make_url(check_url(db_url))
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise BenchError("bench sql needs a database file, e.g. --db sqlite:///results.db")
        path = Path(url.database).expanduser().resolve()
        if not path.is_file():
            raise BenchError(f"database not found: {path} (run a grid first, or pass --db URL)")
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
        return engine, "PRAGMA query_only = ON"
    if url.get_backend_name() == "postgresql":
        return create_engine(url), "SET TRANSACTION READ ONLY"
    return create_engine(url), None


def read_only_query(db_url: str, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `query` on a read-only connection; any write is refused and rolled back."""
    engine, guard = read_only_engine(db_url)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                if guard:
                    connection.execute(text(guard))
                result = connection.execute(text(query))
                columns = list(result.keys()) if result.returns_rows else []
                rows = [tuple(row) for row in result] if result.returns_rows else []
            finally:
                transaction.rollback()
    except DBAPIError as error:
        message = str(error.orig).splitlines()[0] if error.orig else str(error).splitlines()[0]
        if "readonly" in message.lower() or "read-only" in message.lower():
            raise BenchError(f"bench sql is read-only; the statement was refused ({message})") from None
        raise BenchError(f"SQL error: {message}") from None
    except SQLAlchemyError as error:
        raise BenchError(f"SQL error: {str(error).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return columns, rows
