"""Whether a results database can be written at all, asked before anything tries: a read-only one is one line."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url

from bench.core.errors import BenchError
from bench.store.session import sqlite_path

# why a PostgreSQL session starts read-only, by pg_settings.source of default_transaction_read_only
_SOURCES = {
    "database": "ALTER DATABASE {db} SET default_transaction_read_only = on; its owner can run `ALTER DATABASE {db} "
                "RESET default_transaction_read_only`",
    "user": "ALTER ROLE {user} SET default_transaction_read_only = on; an administrator can run `ALTER ROLE {user} "
            "RESET default_transaction_read_only`",
    "database user": "ALTER ROLE {user} IN DATABASE {db} SET default_transaction_read_only = on; an administrator "
                     "can run `ALTER ROLE {user} IN DATABASE {db} RESET default_transaction_read_only`",
    "client": "the --db URL's options set default_transaction_read_only; drop that option",
}
_SESSION = ("SELECT current_setting('transaction_read_only'), pg_is_in_recovery(), current_database(), "
            "current_user, (SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only')")


def read_only_reason(db_url: str) -> str | None:
    """Why the database at `db_url` cannot be written, or None: for a SQLite file a read-only mount or no write
    permission (on it or on its directory, where SQLite keeps its journal); for PostgreSQL a hot standby or
    sessions that start read-only. Grants on single tables are not asked: each write finds those out."""
    path = sqlite_path(db_url)
    if path is None:
        return _server_reason(db_url) if make_url(db_url).get_backend_name() == "postgresql" else None
    where = path if path.exists() else path.parent
    if where.exists() and os.statvfs(where).f_flag & os.ST_RDONLY:
        return f"{path} is on a read-only file system"
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is not writable"
    return None


def _server_reason(db_url: str) -> str | None:
    """A PostgreSQL session's own answer: in recovery (a hot standby) or read-only by default, and how to fix it;
    None when it is writable or cannot be asked (connecting is checked, and reported, elsewhere)."""
    from sqlalchemy.exc import DBAPIError

    from bench.store.session import probe_engine

    engine = probe_engine(db_url)  # a new session: a pooled one may predate an ALTER DATABASE ... SET
    try:
        with engine.connect() as connection:
            read_only, standby, db, user, source = connection.exec_driver_sql(_SESSION).one()
    except DBAPIError:
        return None
    finally:
        engine.dispose()
    parsed = make_url(db_url)
    where = f"PostgreSQL database {db} on {parsed.host or 'localhost'}:{parsed.port or 5432}"
    if standby:
        return f"{where} is a hot standby (read-only while in recovery): point --db at the primary"
    if read_only != "on":
        return None
    how = _SOURCES.get(source, f"default_transaction_read_only is on ({source}); set it off for this database or "
                               "role").format(db=db, user=user)
    return f"{where} starts every session read-only ({how})"


def require_writable(db_url: str, why: str) -> None:
    """One line, before anything is loaded or written, when `db_url` cannot be written; `why` says what writes."""
    reason = read_only_reason(db_url)
    if reason is not None:
        raise BenchError(f"--db: {reason}; {why}, so it needs a writable database")
