"""`bench sql` on SQLite is bounded: a runaway statement stops at --timeout, a huge result at --limit rows or the
byte bound, a gigabyte value is refused, control characters reach the terminal escaped, a read leaves no file
beside the database, and a --where filter meets the same time bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.errors import BenchError
from bench.store.results import Store
from bench.store.session import get_engine
from tests.support.records import record

FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
FIVE_MILLION = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT x FROM c"


@pytest.fixture
def closed_db(tmp_path: Path) -> str:
    """A results database with two runs, written and closed (no -wal or -shm beside it)."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    store = Store(url)
    store.save_run(record("a", error="\x1b[2J\x1b[31mred\x07"))
    store.save_run(record("b"))
    get_engine.cache_clear()
    assert isinstance(store.engine, Engine)
    store.engine.dispose()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("results.db")) == [
        "results.db", "results.db-lock"]
    return url


def sql(*args: str):  # noqa: ANN201
    return CliRunner().invoke(app, ["sql", *args])


def test_a_runaway_recursive_statement_stops_at_the_timeout(closed_db: str) -> None:
    started = time.monotonic()
    result = sql(FOREVER, "--db", closed_db, "--timeout", "1")
    assert result.exit_code == 2 and time.monotonic() - started < 20
    assert "time limit of 1 s" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_five_million_row_result_is_cut_at_the_limit_and_says_so(closed_db: str) -> None:
    started = time.monotonic()
    result = sql(FIVE_MILLION, "--db", closed_db, "--limit", "5", "--csv")
    assert result.exit_code == 0 and time.monotonic() - started < 20
    assert result.stdout.split() == ["x", "1", "2", "3", "4", "5"]
    assert "first 5 rows shown; pass --limit N for more" in result.output
    default = sql(FIVE_MILLION, "--db", closed_db, "--csv")  # the default limit holds without the flag
    assert default.exit_code == 0 and len(default.stdout.split()) == 10_001


def test_a_gigabyte_value_is_refused_in_one_line(closed_db: str) -> None:
    result = sql("SELECT length(randomblob(1000000000))", "--db", closed_db)
    assert result.exit_code == 2 and "too big" in result.output and len(result.output.strip().splitlines()) == 1


def test_control_characters_in_values_are_escaped_in_table_output(closed_db: str) -> None:
    result = sql("SELECT spec_key, error FROM runs ORDER BY spec_key", "--db", closed_db)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[2J\\x1b[31mred\\x07" in result.stdout


def test_a_read_leaves_no_file_beside_the_database(closed_db: str, tmp_path: Path) -> None:
    assert sql("SELECT count(*) FROM runs", "--db", closed_db).exit_code == 0
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("results.db")) == [
        "results.db", "results.db-lock"]


def test_a_where_filter_meets_the_same_time_bound(closed_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.report.load import load_runs

    monkeypatch.setattr("bench.store.sql.DEFAULT_TIMEOUT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(BenchError, match="--where"):
        load_runs(closed_db, f"id IN ({FOREVER.replace('count(*)', 'x')})")
    assert time.monotonic() - started < 20
