"""Read-only SQL over the results database (`bench sql`): one statement, on a connection that cannot write.

Layers, each enough for the common case and together for the rest: the statement check (bench.store.sqlcheck,
before anything reaches the server); a read-only connection (SQLite `mode=ro` plus an authorizer that allows
reads only; PostgreSQL `default_transaction_read_only` and a statement timeout); and, on PostgreSQL, no superuser
or server-file/signal role without --allow-superuser, and the statement run after `SET LOCAL ROLE bench_reader`
(bench.store.reader): a role that may only SELECT bench's and Optuna's tables, so functions that write in a
read-only transaction (index maintenance such as brin_summarize_new_values) fail for lack of privilege.
On both, the statement is bounded: in time (PostgreSQL's statement_timeout; a SQLite progress handler that
interrupts it at the deadline), in the rows fetched (`limit`, said when it cuts) and in bytes (SQLite's length limit
for one value, a running byte count for the result).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError
from bench.store.reader import set_reader_role
from bench.store.session import CONNECT_TIMEOUT_S, check_url, connect_sqlite_read_only, driver_url, sqlite_path
from bench.store.sqlcheck import SIDE_EFFECT_FUNCTIONS, check_statement

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_LIMIT = 10_000  # rows `bench sql` prints unless --limit says otherwise
DEFAULT_MAX_BYTES = 256 * 2**20  # bytes of values one result may hold (and SQLite's limit for one value)
PROGRESS_STEPS = 10_000  # SQLite virtual-machine steps between two looks at the deadline
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


def _sqlite_engine(path: Path, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES) -> Engine:
    """Read-only connections whose statements stop at `timeout_s` after connecting and whose values stay under
    `max_bytes` (a connection serves one query: NullPool)."""
    def connect() -> sqlite3.Connection:
        connection = connect_sqlite_read_only(path)
        connection.set_authorizer(_authorize)  # load_extension stays disabled: sqlite3's default
        deadline = time.monotonic() + timeout_s
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1, min(max_bytes, 2**31 - 1)))
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


def read_only_engine(db_url: str, timeout_s: float | None = None) -> tuple[Engine, None]:
    """An engine that cannot write and whose statements stop after `timeout_s` [DEFAULT_TIMEOUT_S] (and None: no
    per-transaction guard statement is needed any more); `--where` filters go through it too."""
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    name = backend(db_url)
    if name == "sqlite":
        path = sqlite_path(db_url)
        if path is None:
            raise BenchError("bench sql needs a database file, e.g. --db sqlite:///results.db")
        if not path.is_file():
            raise BenchError(f"database not found: {path} (run a grid first, or pass --db URL)")
        return _sqlite_engine(path, timeout_s), None
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
    if "statement timeout" in lowered or lowered == "interrupted":
        return f"SQL error: the statement ran past its time limit of {timeout_s:g} s ({message}); pass --timeout"
    if "too big" in lowered:
        return f"SQL error: {message} (a value over the size bound; select less)"
    return f"SQL error: {message}"


@dataclass(frozen=True)
class QueryResult:
    """What one bounded query returned, and why it stopped early (None: every row is here)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    cut: str | None = None


def _value_bytes(value: Any) -> int:  # noqa: ANN401 - any driver value
    return len(value) if isinstance(value, (str, bytes, bytearray, memoryview)) else 8


def _fetch(result: Any, limit: int | None, max_bytes: int | None) -> tuple[list[tuple[Any, ...]], str | None]:  # noqa: ANN401
    """Rows of `result` up to `limit` rows and `max_bytes` bytes of values, and why it stopped early."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    for row in result:
        if limit is not None and len(rows) >= limit:
            return rows, f"first {limit} rows shown; pass --limit N for more"
        size += sum(_value_bytes(value) for value in row)
        if max_bytes is not None and size > max_bytes:
            return rows, f"first {len(rows)} rows shown: the next would pass {max_bytes // 2**20} MiB of values"
        rows.append(tuple(row))
    return rows, None


def read_only_query(db_url: str, query: str, *, allow_superuser: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                    user_sql: bool = True) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only `query` (checked first), every row; nothing it does can change the database or server.
    `user_sql=False` is for bench's own fixed statements: read-only still, but not as `bench_reader`, so a superuser
    or a role outside it reads them too (a finished grid on a read-only server is recognised as finished)."""
    result = bounded_query(db_url, query, allow_superuser=allow_superuser, timeout_s=timeout_s, limit=None,
                           max_bytes=None, user_sql=user_sql)
    return result.columns, result.rows


def bounded_query(db_url: str, query: str, *, allow_superuser: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                  limit: int | None = DEFAULT_LIMIT, max_bytes: int | None = DEFAULT_MAX_BYTES,
                  user_sql: bool = True) -> QueryResult:
    """`bench sql`: one read-only `query` (checked first), bounded in time, rows and bytes; user SQL runs on
    PostgreSQL as `bench_reader` (and a privileged role is refused unless `allow_superuser`)."""
    kind = check_statement(query, backend(db_url))
    engine, _ = read_only_engine(db_url, timeout_s)
    stream = kind not in ("show", "explain")  # PostgreSQL's server-side cursor holds only a query
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                if engine.dialect.name == "postgresql" and user_sql:
                    if not allow_superuser:
                        refuse_privileged_role(connection)
                    set_reader_role(connection)  # SELECT on our tables only, until the rollback below
                result = connection.execution_options(stream_results=stream).exec_driver_sql(query)  # as checked
                columns = list(result.keys()) if result.returns_rows else []
                rows, cut = _fetch(result, limit, max_bytes) if result.returns_rows else ([], None)
                result.close()
            finally:
                transaction.rollback()
    except DBAPIError as error:
        raise BenchError(_error_line(error, timeout_s)) from None
    except SQLAlchemyError as error:
        raise BenchError(f"SQL error: {' '.join(str(error).splitlines()[0].split())}") from None
    finally:
        engine.dispose()
    return QueryResult(columns, rows, cut)
