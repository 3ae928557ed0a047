"""Engines and the one session-scope helper; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI hook signature
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


SUPPORTED_SCHEMES = "sqlite, postgresql"
CONNECT_TIMEOUT_S = 5
# the SQLite URL query keys that SQLAlchemy's pysqlite dialect understands; anything else is a '?' in the path
SQLITE_QUERY_KEYS = {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri",
                     "mode", "cache", "nolock", "immutable", "vfs", "modeof"}
# driver name -> (import name, what to pip install)
DRIVERS = {
    "sqlite": ("sqlite3", "a Python built with sqlite3"), "sqlite+pysqlite": ("sqlite3", "a Python built with sqlite3"),
    "postgresql": ("psycopg", "'distill-bench[postgres]'"),
    "postgresql+psycopg": ("psycopg", "'distill-bench[postgres]'"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
}


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:  # ValueError: a port that is not a number
        detail = f" ({' '.join(str(error).split())[:80]})" if isinstance(error, ValueError) else ""
        raise BenchError(
            f"--db {url!r} is not a database URL{detail}; use sqlite:///results.db or postgresql://user@host/db"
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise BenchError(f"--db {parsed.render_as_string(hide_password=True)!r}: port {parsed.port} must be in "
                         "[1, 65535]")
    return parsed


def _word(value: str) -> bool:
    return value.lower() in ("true", "false", "1", "0")


# SQLite URL options bench passes on, each with what it must be; the rest need uri=true (SQLAlchemy ignores them)
SQLITE_TYPED = {
    "timeout": ("a number of seconds > 0", lambda v: _positive_number(v)),
    "isolation_level": ("one of SERIALIZABLE, READ UNCOMMITTED, AUTOCOMMIT",
                        lambda v: v.upper() in ("SERIALIZABLE", "READ UNCOMMITTED", "AUTOCOMMIT")),
    "check_same_thread": ("true or false", _word),
    "cached_statements": ("an integer >= 0", lambda v: v.isascii() and v.isdigit()),
    "detect_types": ("an integer >= 0", lambda v: v.isascii() and v.isdigit()),
    "uri": ("true or false", _word),
}
POSTGRES_TYPED = {"connect_timeout": ("an integer number of seconds >= 1",
                                      lambda v: v.isascii() and v.isdigit() and int(v) >= 1)}


def _positive_number(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number > 0 and number < float("inf")


def _check_query(url: URL) -> None:
    """Each URL option bench knows must have its type; SQLite's URI-only options need uri=true, else ignored."""
    shown = url.render_as_string(hide_password=True)
    typed = SQLITE_TYPED if url.get_backend_name() == "sqlite" else POSTGRES_TYPED
    for key, values in url.query.items():
        for value in (values,) if isinstance(values, str) else values:
            if key in typed and not typed[key][1](value):
                raise BenchError(f"--db {shown!r}: option {key}={value!r} must be {typed[key][0]}")
            if url.get_backend_name() == "sqlite" and key not in typed and not url.query.get("uri"):
                raise BenchError(f"--db {shown!r}: option {key}= is a SQLite URI option that is ignored without "
                                 "uri=true; drop it (bench writes to its database) or add uri=true")


def _check_driver(url: str, parsed: URL) -> None:
    """A supported scheme and an installed driver, or one line saying which scheme or package is missing."""
    import importlib.util

    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise BenchError(f"--db {shown!r}: unsupported database scheme {parsed.drivername!r}; "
                         f"supported: {SUPPORTED_SCHEMES} (e.g. sqlite:///results.db, postgresql://user@host/db)")
    if parsed.drivername not in DRIVERS:
        raise BenchError(f"--db {shown!r}: driver {parsed.drivername!r} is not supported; "
                         f"use one of {', '.join(f'{name}://' for name in DRIVERS)}")
    module, package = DRIVERS[parsed.drivername]
    if importlib.util.find_spec(module) is None and not (
            parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None):
        raise BenchError(f"--db {shown!r}: the {module} driver is not installed; pip install {package}")


def _check_sqlite_path(url: str, parsed: URL) -> None:
    """The file the URL names is the file the user meant: a '?' in a path must be written %3F."""
    if "?" in url and not (parsed.query and set(parsed.query) <= SQLITE_QUERY_KEYS):
        raise BenchError(f"--db {url!r}: '?' starts URL options; write a '?' in a SQLite file name as %3F")
    if parsed.database not in (None, "", ":memory:") and not parsed.query.get("uri"):
        path = Path(parsed.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise BenchError(f"--db {url!r}: directory {path.parent} does not exist")
        if path.is_dir():
            raise BenchError(f"--db {url!r}: {path} is a directory; name a database file in it")
        if path.exists() and not path.is_file():
            raise BenchError(f"--db {url!r}: {path} is not a regular file (a device or pipe); name a database file")


def check_url(url: str) -> str:
    """Validate a database URL early, with one clear line when it is not one (scheme, driver, path)."""
    parsed = _parse(url)
    _check_driver(url, parsed)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(url, parsed)
    _check_query(parsed)
    return url


def driver_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver, psycopg2, is not a dependency)."""
    import importlib.util

    parsed = _parse(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        if importlib.util.find_spec("psycopg") is None:
            if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
                return url
            raise BenchError(f"--db {parsed.render_as_string()}: PostgreSQL needs psycopg; "
                             "pip install 'distill-bench[postgres]'")
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None for in-memory or `uri=true` URLs, and for other backends)."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") or parsed.query.get("uri"):
        return None
    return Path(parsed.database).expanduser().resolve()


def connect_sqlite_read_only(path: Path) -> sqlite3.Connection:
    """A sqlite3 connection that cannot write and opens exactly `path` (percent-escaped: '#', '?', '%', spaces).

    It creates no file beside the database: with no `-wal` there (no process has it open for writing, since SQLite
    removes it on the last clean close) the file is opened `immutable` (no locks, no `-shm`); otherwise `mode=ro`
    shares the writer's existing `-wal`/`-shm` and sees its committed rows.
    """
    sidecar = path.with_name(path.name + "-wal")
    options = "mode=ro" if sidecar.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.as_uri()}?{options}", uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False)


def _check_sqlite_file(path: Path) -> None:
    """An existing SQLite file must be readable: a file of garbage or broken pages is a one-line error."""
    if not path.is_file():
        return
    try:
        connection = connect_sqlite_read_only(path)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(1)")]
        finally:
            connection.close()
    except sqlite3.Error as error:
        problems = [str(error)]
    if problems != ["ok"]:
        detail = " ".join(str(problems[0]).split())[:200]
        raise BenchError(f"{path} is not a readable SQLite database: {detail}; move it away or pass another --db")


def probe_engine(url: str) -> Engine:
    """An engine for one quick question to a server: a fresh connection each time (NullPool), a short connect
    timeout; dispose it after use."""
    return create_engine(driver_url(url), poolclass=NullPool, connect_args=_connect_args(url))


def _check_server(url: str) -> None:
    """Connect once with a short timeout, so a wrong host or password is one line in seconds, not a traceback."""
    shown = make_url(url).render_as_string(hide_password=True)
    engine = probe_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        message = " ".join(str(error.orig or error).split())[:300]
        raise BenchError(f"--db {shown}: cannot connect: {message}") from None
    finally:
        engine.dispose()


def check_connection(url: str) -> str:
    """Check the URL, then that the database answers (server) or is readable (existing SQLite file)."""
    check_url(url)
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path)
    elif make_url(url).get_backend_name() == "postgresql":
        _check_server(url)
    return url


def _connect_args(url: str) -> dict[str, object]:
    """A connect timeout for PostgreSQL unless the URL sets its own."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    check_url(url)
    engine = create_engine(driver_url(url), future=True, connect_args=_connect_args(url))
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
