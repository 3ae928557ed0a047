"""Engines and the one session-scope helper; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from bench.errors import BenchError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI hook signature
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def check_url(url: str) -> str:
    """Validate a database URL early, with one clear line when it is not one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BenchError(
            f"--db {url!r} is not a database URL; use sqlite:///results.db or postgresql://..."
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise BenchError(f"--db {url!r}: directory {parent} does not exist")
    return url


def driver_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver, psycopg2, is not a dependency)."""
    import importlib.util

    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        if importlib.util.find_spec("psycopg") is None:
            if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
                return url
            raise BenchError(f"--db {parsed.render_as_string()}: PostgreSQL needs psycopg; "
                             "pip install 'distill-bench[postgres]'")
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    check_url(url)
    engine = create_engine(driver_url(url), future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
