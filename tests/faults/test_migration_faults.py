"""Migrations cannot half-apply: a disk that fills (or any error) during the first migration leaves no bench
table, a database left half-migrated by an older version is repaired or refused in one line, and an unknown
schema revision is one line naming the revision found and the one expected."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, inspect, text

from bench.core.errors import BenchError
from bench.store import migrate
from bench.store.results import Store
from tests.faults.conftest import fill
from tests.support.records import record

STATEMENTS = ["CREATE TABLE runs", "CREATE UNIQUE INDEX ix_runs_spec_key", "CREATE TABLE run_epochs",
              "CREATE INDEX ix_run_epochs_run_id", "ALTER TABLE runs ADD COLUMN", "INSERT INTO bench_alembic_version"]


def bench_tables(path: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return set(inspect(engine).get_table_names()) & {"runs", "run_epochs"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("failing", STATEMENTS)
def test_a_migration_that_fails_at_any_statement_leaves_nothing_and_the_next_run_works(
        tmp_path: Path, failing: str) -> None:
    def disk_full(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().startswith(failing):
            raise sqlite3.OperationalError(f"database or disk is full ({errno.errorcode[errno.ENOSPC]})")

    url = f"sqlite:///{tmp_path / 'r.db'}"
    event.listen(Engine, "before_cursor_execute", disk_full)
    try:
        with pytest.raises(BenchError, match=r"could not be migrated to .*disk is full.*nothing was changed"):
            Store(url)
    finally:
        event.remove(Engine, "before_cursor_execute", disk_full)
    assert bench_tables(tmp_path / "r.db") == set()  # not `runs` without `run_epochs`
    store = Store(url)  # space freed: the next run migrates from scratch
    assert store.save_run(record("a")) and store.done_keys() == {"a"}


def test_a_disk_that_fills_during_the_first_migration_then_frees(tmpfs) -> None:  # noqa: ANN001
    point = tmpfs("1m")
    failed = []
    for leave in (4096, 12288, 20480, 28672, 65536):  # run out of space at different statements
        database = point / f"r{leave}.db"
        filler = fill(point, leave)
        try:
            Store(f"sqlite:///{database}")
        except BenchError as error:
            assert "could not be migrated" in str(error) and "\n" not in str(error)
            assert bench_tables(database) == set()
            failed.append(leave)
        else:
            assert bench_tables(database) == {"runs", "run_epochs"}  # it fitted: all of it
        filler.unlink()
        store = Store(f"sqlite:///{database}")
        assert store.save_run(record(f"k{leave}")) and store.done_keys() == {f"k{leave}"}
        for path in point.iterdir():
            path.unlink()
    assert failed and failed != [4096, 12288, 20480, 28672, 65536], failed  # some filled, at least one fitted


def half_migrated(path: Path, with_row: bool) -> str:
    """What an older bench left when the disk filled in its first migration: `runs`, an empty version table."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE bench_alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    connection.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, spec_key VARCHAR(64))")
    if with_row:
        connection.execute("INSERT INTO runs (spec_key) VALUES ('x')")
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


def test_an_empty_half_migrated_database_is_repaired(tmp_path: Path) -> None:
    store = Store(half_migrated(tmp_path / "h.db", with_row=False))
    assert store.save_run(record("a")) and store.done_keys() == {"a"}


def test_a_half_migrated_database_with_rows_is_refused_in_one_line(tmp_path: Path) -> None:
    url = half_migrated(tmp_path / "h.db", with_row=True)
    with pytest.raises(BenchError) as refused:
        Store(url)
    line = str(refused.value)
    assert "\n" not in line and "found none" in line and "i14_artifacts" in line.replace(migrate.head_revision(
        migrate.alembic_config(create_engine(url))), "i14_artifacts") and "back the file up" in line
    connection = sqlite3.connect(tmp_path / "h.db")
    assert connection.execute("SELECT spec_key FROM runs").fetchall() == [("x",)]  # untouched


def test_an_unknown_schema_revision_names_the_one_found_and_the_one_expected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    Store(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE bench_alembic_version SET version_num = 'i99_future'"))
    engine.dispose()
    head = migrate.head_revision(migrate.alembic_config(create_engine(url)))
    with pytest.raises(BenchError, match=rf"schema revision 'i99_future' is not one .* expects '{head}'"):
        Store(url)
