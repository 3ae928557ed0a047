"""Run the store's Alembic migrations programmatically (no alembic.ini needed), all-or-nothing.

The whole upgrade runs in one transaction on both backends: PostgreSQL's DDL is transactional, and SQLite's is
too once the driver stops managing transactions (pysqlite opens none before CREATE TABLE, so a failure halfway
left `runs` without `run_epochs`); here SQLite gets an explicit BEGIN IMMEDIATE. Before migrating, the recorded
revision is checked: a revision this version does not know, or bench tables without a recorded revision (left by
an older version's interrupted migration), is one line naming what was found and what is expected; such a
half-migrated database whose tables are empty is repaired (dropped and migrated again in the same transaction).
A database already at head is only read, so a read-only file works.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError
from bench.store.lock import SCHEMA_LOCK, database_lock
from bench.store.session import connect_sqlite_read_only, sqlite_path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "bench_alembic_version"  # bench's own, beside Optuna's alembic_version
BENCH_TABLES = ("run_epochs", "runs")  # dropped in this order when a half-migrated empty database is repaired
log = logging.getLogger("bench")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = engine.url.render_as_string(hide_password=False)  # '#' in a path or password is escaped as %23
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser reads '%' as interpolation
    return config


def head_revision(config: Config) -> str:
    """The revision this version of bench migrates to."""
    return ScriptDirectory.from_config(config).get_current_head() or "base"


def transactional_engine(engine: Engine) -> Engine:
    """`engine` itself (PostgreSQL), or a SQLite engine whose BEGIN covers DDL: the driver's own transaction
    handling is off and every transaction starts with BEGIN IMMEDIATE (the write lock, taken at once)."""
    if engine.dialect.name != "sqlite":
        return engine
    migrating = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(migrating, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI hook signature
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT: ours only
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(migrating, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _table_rows(connection: Connection, tables: list[str]) -> int:
    return sum(int(connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()) for table in tables)


def check_revision(connection: Connection, config: Config, shown: str, repair: bool = False) -> str | None:
    """The recorded revision (None for a new or half-migrated empty database, whose leftovers `repair` drops);
    one-line BenchError for an unknown revision or a half-migrated database that holds rows."""
    current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    head = head_revision(config)
    script = ScriptDirectory.from_config(config)
    if current is not None:
        if current not in {rev.revision for rev in script.walk_revisions()}:
            raise BenchError(f"--db {shown}: schema revision {current!r} is not one this version of bench knows "
                             f"(it expects {head!r}); a newer bench wrote it: upgrade distill-bench, or pass "
                             "another --db")
        return current
    present = [table for table in BENCH_TABLES if inspect(connection).has_table(table)]
    if not present:
        return None
    rows = _table_rows(connection, present)
    if rows:
        raise BenchError(f"--db {shown}: table(s) {', '.join(present)} hold {rows} row(s) but no schema revision is "
                         f"recorded (found none, expected {head!r}): an older bench's migration was interrupted; "
                         "back the file up, then run `alembic stamp` to the revision its columns match, or move "
                         "it away")
    if not repair:
        return None
    for table in present:  # empty leftovers of an interrupted first migration: start it again
        connection.execute(text(f'DROP TABLE "{table}"'))
    log.warning("%s: empty table(s) %s left by an interrupted migration were dropped; migrating again", shown,
                ", ".join(present))
    return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` inside one transaction, one process at a time (workers start together)."""
    config = alembic_config(engine)
    if revision == "head" and _at_head(engine, config):  # only read: a read-only database at head works
        return
    migrating = transactional_engine(engine)
    try:
        with database_lock(engine.url.render_as_string(hide_password=False), SCHEMA_LOCK), \
                migrating.begin() as connection:
            check_revision(connection, config, _shown(engine), repair=True)  # again, under the write lock
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except DBAPIError as error:
        raise BenchError(_write_error(engine, config, error)) from None
    except OSError as error:  # the lock file beside a SQLite database on a read-only or full disk
        raise BenchError(f"--db {_shown(engine)}: the schema needs migrating to {head_revision(config)!r} but "
                         f"{error.filename or 'the lock file'} cannot be written ({error.strerror}); make the "
                         "database's directory writable, then run again") from None
    finally:
        if migrating is not engine:
            migrating.dispose()


def _at_head(engine: Engine, config: Config) -> bool:
    """Whether the schema is at head, read without writing (SQLite: a read-only connection, no file created)."""
    path = sqlite_path(engine.url.render_as_string(hide_password=False)) if engine.dialect.name == "sqlite" else None
    if engine.dialect.name == "sqlite" and (path is None or not path.is_file()):
        return False  # a new or in-memory database: migrate
    reader = create_engine("sqlite://", creator=lambda: connect_sqlite_read_only(path), poolclass=NullPool
                           ) if path is not None else engine
    try:
        with reader.connect() as connection:
            return check_revision(connection, config, _shown(engine)) == head_revision(config)
    except DBAPIError:
        return False  # unreadable here: the migration below says why in one line
    finally:
        if reader is not engine:
            reader.dispose()


def _write_error(engine: Engine, config: Config, error: DBAPIError) -> str:
    """One line for a migration the database refused (read-only, disk full, locked)."""
    reason = " ".join(str(error.orig or error).split("\n")[0].split())[:200]
    return (f"--db {_shown(engine)}: the schema could not be migrated to {head_revision(config)!r} ({reason}); "
            "nothing was changed: free space or make the database writable, then run again")


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to `revision` ("base" drops every bench table)."""
    config = alembic_config(engine)
    migrating = transactional_engine(engine)
    try:
        with migrating.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        if migrating is not engine:
            migrating.dispose()
