"""Read-only SQL over the results database (`bench sql`): one statement, on a connection that cannot write.

Three layers, each enough for the common case and together for the rest: the statement check
(bench.store.sqlcheck, before anything reaches the server); a read-only connection (SQLite `mode=ro` plus an
authorizer that allows reads only; PostgreSQL `default_transaction_read_only` and a statement timeout);
and, on PostgreSQL, no superuser or server-file/signal role, since read-only transactions still let those
run COPY ... TO PROGRAM and admin functions.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError
from bench.store.session import CONNECT_TIMEOUT_S, check_url, connect_sqlite_read_only, driver_url, sqlite_path
from bench.store.sqlcheck import SIDE_EFFECT_FUNCTIONS, check_statement

DEFAULT_TIMEOUT_S = 300.0
PRIVILEGED_ROLES = ["pg_execute_server_program", "pg_write_server_files", "pg_read_server_files",
                    "pg_signal_backend"]
_PRIVILEGES = text(
    "SELECT current_user, string_agg(rolname, ', ' ORDER BY rolname) FROM pg_roles "
    "WHERE pg_has_role(current_user, oid, 'MEMBER') AND (rolsuper OR rolname = ANY(:names))"
)
# pragmas SQLAlchemy's inspector reads (their argument names a table or index), and value-less reads
_OBJECT_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                   "foreign_key_list"}
_QUERY_PRAGMAS = {"read_uncommitted", "user_version", "schema_version", "database_list"}
_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_TRANSACTION}


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """SQLite authorizer: reads only; no ATTACH, VACUUM, writes, pragma writes or side-effect functions."""
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in SIDE_EFFECT_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _OBJECT_PRAGMAS or (arg2 is None and name in _QUERY_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _sqlite_engine(path: Path) -> Engine:
    def connect() -> sqlite3.Connection:
        connection = connect_sqlite_read_only(path)
        connection.set_authorizer(_authorize)  # load_extension stays disabled: sqlite3's default
        return connection

    return create_engine("sqlite+pysqlite://", creator=connect, poolclass=NullPool)


def _postgres_engine(db_url: str, timeout_s: float) -> Engine:
    """Every transaction read-only, statements bounded in time, standard strings (what the tokenizer assumes)."""
    parsed = make_url(db_url)
    settings = {"default_transaction_read_only": "on", "statement_timeout": str(max(1, int(timeout_s * 1000))),
                "idle_in_transaction_session_timeout": str(max(1, int(timeout_s * 1000))),
                "standard_conforming_strings": "on"}
    user_options = parsed.query.get("options")
    options = [user_options] if isinstance(user_options, str) else []
    options += [f"-c {name}={value}" for name, value in settings.items()]  # ours last: they win
    connect_args: dict[str, object] = {"options": " ".join(options)}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(driver_url(db_url), poolclass=NullPool, connect_args=connect_args)


def backend(db_url: str) -> str:
    """`sqlite` or `postgresql` for a checked URL."""
    return make_url(check_url(db_url)).get_backend_name()


def read_only_engine(db_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Engine, None]:
    """An engine that cannot write (and None: no per-transaction guard statement is needed any more)."""
    name = backend(db_url)
    if name == "sqlite":
        path = sqlite_path(db_url)
        if path is None:
            raise BenchError("bench sql needs a database file, e.g. --db sqlite:///results.db")
        if not path.is_file():
            raise BenchError(f"database not found: {path} (run a grid first, or pass --db URL)")
        return _sqlite_engine(path), None
    return _postgres_engine(db_url, timeout_s), None


def refuse_privileged_role(connection: Connection) -> None:
    """A superuser (or a member of a server-file / signal role) may not run `bench sql` without the flag."""
    user, roles = connection.execute(_PRIVILEGES, {"names": PRIVILEGED_ROLES}).one()
    if roles:
        raise BenchError(
            f"--db connects as {user!r}, a superuser or member of {roles}; read-only transactions still let such "
            "a role run COPY ... TO PROGRAM and admin functions, so bench sql refuses it: connect as a read-only "
            "role (GRANT SELECT), or pass --allow-superuser"
        )


def _error_line(error: DBAPIError, timeout_s: float) -> str:
    message = " ".join(str(error.orig if error.orig is not None else error).split("\n")[0].split())
    lowered = message.lower()
    if "read-only" in lowered or "readonly" in lowered or "not authorized" in lowered:
        return f"bench sql is read-only; the statement was refused ({message})"
    if "statement timeout" in lowered:
        return f"SQL error: {message} (after {timeout_s:g} s; pass --timeout)"
    return f"SQL error: {message}"


def read_only_query(db_url: str, query: str, *, allow_superuser: bool = False,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only `query` (checked first); nothing it does can change the database or the server."""
    check_statement(query, backend(db_url))
    engine, _ = read_only_engine(db_url, timeout_s)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                if engine.dialect.name == "postgresql" and not allow_superuser:
                    refuse_privileged_role(connection)
                result = connection.exec_driver_sql(query)  # exactly the checked text, no bind parsing
                columns = list(result.keys()) if result.returns_rows else []
                rows = [tuple(row) for row in result] if result.returns_rows else []
            finally:
                transaction.rollback()
    except DBAPIError as error:
        raise BenchError(_error_line(error, timeout_s)) from None
    except SQLAlchemyError as error:
        raise BenchError(f"SQL error: {' '.join(str(error).splitlines()[0].split())}") from None
    finally:
        engine.dispose()
    return columns, rows
