"""One lock per database across processes and machines: schema creation and enqueueing happen one at a time."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError

LOCK_TIMEOUT_S = 600.0  # migrations and enqueueing take seconds; a lock held this long is a hung process
POLL_S = 0.05
SCHEMA_LOCK = "schema"  # held while Optuna's tables or ours are created or migrated
ENQUEUE_LOCK = "enqueue"  # held while a grid's cells are compared with its trials and enqueued
_held: dict[str, int] = {}  # lock identity -> depth in this process (re-entrant: nesting never deadlocks)


def lock_key(name: str) -> int:
    """A fixed signed 64-bit PostgreSQL advisory lock key for `name` (the same in every process)."""
    digest = hashlib.blake2b(f"distill-bench:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_file(db_url: str) -> Path | None:
    """`results.db-lock` beside a SQLite database file; None for in-memory databases (one process only)."""
    database = make_url(db_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve().with_name(Path(database).name + "-lock")  # beside -wal, -shm


@contextmanager
def database_lock(db_url: str, name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the database-wide lock `name` while the block runs: no other bench process holds it meanwhile.

    PostgreSQL: a session advisory lock on a connection of its own (released when that connection closes,
    even if this process dies). SQLite: an fcntl lock on a file beside the database (one per database,
    whatever `name`: SQLite has one writer anyway). Other databases: no lock.
    """
    backend = make_url(db_url).get_backend_name()
    path = lock_file(db_url) if backend == "sqlite" else None
    identity = str(path) if backend == "sqlite" else f"{db_url}#{name}"
    hold = _postgres_lock if backend == "postgresql" else _file_lock if path is not None else _no_lock
    if _held.get(identity):  # this process holds it already: nesting must not wait for itself
        hold = _no_lock
    with hold(db_url, name, timeout_s):
        _held[identity] = _held.get(identity, 0) + 1
        try:
            yield
        finally:
            _held[identity] -= 1


@contextmanager
def _no_lock(_db_url: str, _name: str, _timeout_s: float) -> Iterator[None]:
    yield


@contextmanager
def _postgres_lock(db_url: str, name: str, timeout_s: float) -> Iterator[None]:
    from bench.store.session import driver_url  # bench.store imports this module (its migration takes the lock)

    engine = create_engine(driver_url(db_url), poolclass=NullPool)  # closing the connection frees the lock
    try:
        with engine.connect() as connection:
            _wait_for(lambda: connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                 {"key": lock_key(name)}).scalar(), name, timeout_s)
            connection.commit()
            yield
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
            connection.commit()
    finally:
        engine.dispose()


@contextmanager
def _file_lock(db_url: str, name: str, timeout_s: float) -> Iterator[None]:
    path = lock_file(db_url)
    assert path is not None
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # left in place: deleting a lock file races
    try:
        _wait_for(lambda: _try_flock(descriptor), name, timeout_s)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _try_flock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(try_lock, name: str, timeout_s: float) -> None:  # noqa: ANN001 - a () -> bool
    """Try the lock until it is ours; a bounded wait, then one clear line."""
    deadline = time.monotonic() + timeout_s
    while not try_lock():
        if time.monotonic() > deadline:
            raise BenchError(f"database lock {name!r}: another bench process held it for over {timeout_s:.0f} s; "
                             "stop a hung `bench` process (or remove a stale SQLite .lock holder) and retry")
        time.sleep(POLL_S)
