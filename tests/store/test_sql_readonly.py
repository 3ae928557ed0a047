"""`bench sql` cannot change anything: a corpus of write and side-effect attempts through the real CLI.

Each attempt runs on SQLite and on the test PostgreSQL server (as the superuser, with and without
--allow-superuser, and as a plain role); each must exit 2 with one line on stderr and leave the rows,
the files, the other connections and the server's settings as they were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.store.results import Store
from tests.support.paths import REPO
from tests.support.records import record

# {dir}: a directory the PostgreSQL server may write to; {pid}: a backend held open by the test
ATTEMPTS = [
    "INSERT INTO runs (spec_key) VALUES ('x')",
    "UPDATE runs SET test_acc = 1",
    "DELETE FROM runs",
    "DROP TABLE runs",
    "CREATE TABLE evil (x int)",
    "CREATE TEMP TABLE evil AS SELECT 1",
    "ALTER TABLE runs ADD COLUMN evil int",
    "TRUNCATE runs",
    "GRANT ALL ON runs TO PUBLIC",
    "VACUUM",
    "REINDEX runs",
    "ANALYZE runs",
    "CREATE EXTENSION IF NOT EXISTS plpgsql",
    "DO $$BEGIN DELETE FROM runs; END$$",
    "CALL evil()",
    "SELECT * INTO stolen FROM runs",
    "WITH gone AS (DELETE FROM runs RETURNING *) SELECT count(*) FROM gone",
    "COMMIT; DELETE FROM runs",
    "SET TRANSACTION READ WRITE; UPDATE runs SET test_acc = 1; COMMIT",
    "ROLLBACK; UPDATE runs SET test_acc = 1",
    "SELECT 1; DELETE FROM runs",
    "SELECT ';' AS semi; DELETE FROM runs",
    "SELECT 'it''s; fine'; DROP TABLE runs",
    "SELECT 1 /* ; */ ; DELETE FROM runs -- ;",
    "SELECT $$;$$; DELETE FROM runs",
    "SELECT 'a\\'; DELETE FROM runs; --'",
    "SELECT foo$x$ FROM runs; DELETE FROM runs; -- $x$",
    "SELECT 1 --\r'\n; DELETE FROM runs; --'",
    "EXPLAIN ANALYZE DELETE FROM runs",
    "EXPLAIN (ANALYZE) WITH d AS (DELETE FROM runs RETURNING 1) SELECT * FROM d",
    "PRAGMA writable_schema=1",
    "PRAGMA journal_mode=DELETE",
    "ATTACH DATABASE '{dir}/attached.db' AS evil",
    "DETACH DATABASE main",
    "VACUUM INTO '{dir}/copy.db'",
    "COPY runs TO PROGRAM 'touch {dir}/pwned'",
    "COPY runs TO '{dir}/runs.csv'",
    "COPY runs FROM PROGRAM 'touch {dir}/pwned2'",
    "SELECT pg_terminate_backend({pid})",
    "SELECT pg_catalog.pg_cancel_backend({pid})",
    'SELECT "pg_terminate_backend"({pid})',
    "SELECT pg_reload_conf()",
    "SELECT set_config('work_mem', '1MB', false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_notify('chan', 'x')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT nextval('runs_id_seq')",
    "SELECT query_to_xml('SELECT pg_terminate_backend({pid})', true, true, '')",
    "SELECT load_extension('{dir}/evil')",
    "SELECT * FROM runs FOR UPDATE",
    "LOCK TABLE runs IN ACCESS EXCLUSIVE MODE",
    "LISTEN chan",
    "NOTIFY chan, 'x'",
    "SET ROLE bench",
    "SET default_transaction_read_only = off",
    "RESET ALL",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "PREPARE p AS DELETE FROM runs",
    "EXECUTE p",
    "BEGIN",
    "CHECKPOINT",
    "REPLACE INTO runs (id) VALUES (1)",
]
LEGIT = [
    ("SELECT spec_key, test_acc FROM runs ORDER BY spec_key", [["a", 0.5], ["b", 0.7]]),
    ("WITH best AS (SELECT max(test_acc) AS m FROM runs) SELECT spec_key FROM runs, best WHERE test_acc = m",
     [["b"]]),
    ("SELECT ';' AS semi, 'DELETE' AS word -- a comment; with a semicolon\n;", [[";", "DELETE"]]),
    ("VALUES (1, 'x')", [[1, "x"]]),
    ("SELECT count(*) AS n FROM runs WHERE replace(spec_key, 'a', 'z') = 'z'", [[1]]),
]
POSTGRES_LEGIT = [("(SELECT 1 AS n) UNION ALL (SELECT 2) ORDER BY n", [[1], [2]]),
                  ("TABLE runs ORDER BY id LIMIT 0", []), ("SHOW standard_conforming_strings", [["on"]]),
                  ("EXPLAIN SELECT * FROM runs", None),
                  # the tokenizer follows each dialect: these are one harmless statement, the ';' is inside
                  ("SELECT E'\\'; DELETE FROM runs; --' AS s", [["'; DELETE FROM runs; --"]]),
                  ("SELECT 1 AS n /* /* */ ; DELETE FROM runs; -- */", [[1]])]
SQLITE_LEGIT = [("EXPLAIN QUERY PLAN SELECT * FROM runs", None),
                ("SELECT [a;b] FROM (SELECT 1 AS [a;b])", [[1]]),
                ("SELECT 1 AS n --\r; DELETE FROM runs\n", [[1]])]
runner = CliRunner()


def _fill(url: str) -> None:
    store = Store(url)
    store.save_run(record("a", test_acc=0.5))
    store.save_run(record("b", test_acc=0.7))


def _sql(url: str, statement: str, *flags: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["sql", "--db", url, "--json", *flags, "--", statement])
    return result.exit_code, result.stdout, result.stderr


def _assert_refused(code: int, stdout: str, stderr: str, expect: str = "") -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    assert expect in lines[0], lines[0]


@pytest.fixture(scope="module")
def server_dir() -> Iterator[Path]:
    """A directory the PostgreSQL server could write into (so a COPY TO that got through would show)."""
    path = Path(tempfile.mkdtemp(prefix="bench-sql-ro-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- SQLite ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    directory = tmp_path_factory.mktemp("sqlite-ro") / "lab #1?"  # '#', '?' and a space in the path
    directory.mkdir()
    url = f"sqlite:///{directory}/results.db".replace("?", "%3F")
    _fill(url)
    assert _sql(url, "SELECT 1")[0] == 0  # the WAL companions (-wal, -shm) exist from here on
    return url, directory


def _sqlite_state(url: str, directory: Path) -> tuple:
    from bench.store.sql import read_only_query

    return (read_only_query(url, "SELECT * FROM runs ORDER BY id"),
            read_only_query(url, "SELECT * FROM run_epochs ORDER BY id"),
            read_only_query(url, "SELECT type, name, sql FROM sqlite_master ORDER BY name"),
            sorted(p.name for p in directory.iterdir()), sorted(p.name for p in directory.parent.iterdir()))


@pytest.mark.parametrize("statement", ATTEMPTS)
def test_sqlite_refuses_and_changes_nothing(sqlite_db: tuple[str, Path], server_dir: Path, statement: str) -> None:
    url, directory = sqlite_db
    before = _sqlite_state(url, directory)
    _assert_refused(*_sql(url, statement.format(dir=directory, pid=os.getpid())))
    assert _sqlite_state(url, directory) == before
    assert list(server_dir.iterdir()) == []


@pytest.mark.parametrize(("statement", "rows"), LEGIT + SQLITE_LEGIT)
def test_sqlite_reads_still_work(sqlite_db: tuple[str, Path], statement: str, rows: list | None) -> None:
    import json

    code, stdout, stderr = _sql(sqlite_db[0], statement)
    assert code == 0, stderr
    records = json.loads(stdout)
    assert rows is None and records or [list(r.values()) for r in records] == rows


def test_sqlite_path_with_hash_is_the_named_file(tmp_path: Path) -> None:
    """`bench runs`, `report` and `sql` read exactly the file --db names, and create no other."""
    url = f"sqlite:///{tmp_path}/a#b.db"
    _fill(url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a#b.db", "a#b.db-lock", "a#b.db-shm", "a#b.db-wal"]
    listed = runner.invoke(app, ["runs", "--db", url, "--csv"])
    assert listed.exit_code == 0 and len(listed.stdout.strip().splitlines()) == 3, listed.output
    assert runner.invoke(app, ["report", "--db", url, "--out", str(tmp_path / "out"), "--format", "csv"]
                         ).exit_code == 0
    assert "digits,t,resnet,kd" in "".join(p.read_text() for p in (tmp_path / "out").rglob("*.csv"))
    assert _sql(url, "SELECT count(*) AS n FROM runs")[1].strip() == '[{"n": 2}]'
    assert not (tmp_path / "a").exists()


def test_refusal_through_python_m_bench(sqlite_db: tuple[str, Path]) -> None:
    """The installed entry point, not only the in-process app: one line, exit 2, rows unchanged."""
    url, directory = sqlite_db
    before = _sqlite_state(url, directory)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bench", "sql", "--db", url, "COMMIT; DELETE FROM runs"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=directory)
    _assert_refused(result.returncode, result.stdout, result.stderr, "more than one statement")
    assert _sqlite_state(url, directory) == before


@pytest.mark.parametrize("statement", ["", "   \n\t", "-- only a comment", "/* nothing */ ;"])
def test_empty_statement_is_one_line(sqlite_db: tuple[str, Path], statement: str) -> None:
    _assert_refused(*_sql(sqlite_db[0], statement), "bench sql needs a statement")


def test_sqlite_connection_refuses_writes_even_without_the_statement_check(sqlite_db: tuple[str, Path],
                                                                         server_dir: Path) -> None:
    """The second layer alone: the read-only engine's authorizer denies ATTACH, VACUUM INTO and writes."""
    import sqlalchemy as sa

    from bench.store.sql import read_only_engine

    engine, _ = read_only_engine(sqlite_db[0])
    try:
        for statement in (f"ATTACH '{server_dir}/a.db' AS a", f"VACUUM INTO '{server_dir}/v.db'",
                          "DELETE FROM runs", "PRAGMA writable_schema=1", "CREATE TEMP TABLE t (x)"):
            with engine.connect() as connection, pytest.raises(sa.exc.DBAPIError):
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
    assert list(server_dir.iterdir()) == []


# --- PostgreSQL -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(postgres_server: str) -> Iterator[dict]:
    """A filled database, a plain role that may only SELECT (a member of bench_reader), and a connection held open
    by the test."""
    import psycopg

    base = postgres_server.replace("+psycopg", "")
    name, role = f"sqlro_{os.getpid()}", f"reader_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
    _fill(f"{postgres_server}/{name}")
    held = psycopg.connect(f"{base}/{name}", autocommit=True)
    held.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    held.execute(f"GRANT bench_reader TO {role}")  # bench sql runs its statement as bench_reader
    reader = postgres_server.replace("//bench@", f"//{role}@") + f"/{name}"
    yield {"super": f"{postgres_server}/{name}", "reader": reader, "held": held,
           "pid": held.execute("SELECT pg_backend_pid()").fetchone()[0]}
    held.close()


def _pg_state(pg: dict) -> tuple:
    held = pg["held"]
    queries = ["SELECT * FROM runs ORDER BY id", "SELECT * FROM run_epochs ORDER BY id",
               "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
               "SELECT rolname FROM pg_roles ORDER BY 1", "SELECT extname FROM pg_extension ORDER BY 1",
               "SELECT count(*) FROM pg_largeobject_metadata", "SELECT last_value FROM runs_id_seq",
               "SELECT name, setting FROM pg_file_settings ORDER BY 1, 2",
               "SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid()"]
    state = [held.execute(query).fetchall() for query in queries]
    import psycopg

    with psycopg.connect(pg["super"].replace("+psycopg", ""), autocommit=True) as fresh:  # server-wide settings
        state.append(fresh.execute("SELECT name, setting FROM pg_settings WHERE name IN ('work_mem', "
                                   "'default_transaction_read_only', 'statement_timeout', 'log_min_messages') "
                                   "ORDER BY 1").fetchall())
        state.append(fresh.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pg["pid"]]).fetchall())
    return tuple(state)


@pytest.mark.parametrize("who", ["super", "super --allow-superuser", "reader"])
@pytest.mark.parametrize("statement", ATTEMPTS)
def test_postgres_refuses_and_changes_nothing(pg: dict, server_dir: Path, statement: str, who: str) -> None:
    before = _pg_state(pg)
    url = pg[who.split()[0]]
    _assert_refused(*_sql(url, statement.format(dir=server_dir, pid=pg["pid"]), *who.split()[1:]))
    assert _pg_state(pg) == before
    assert pg["held"].execute("SELECT 1").fetchone() == (1,)  # the held backend was not killed
    assert list(server_dir.iterdir()) == []


@pytest.mark.parametrize("who", ["super --allow-superuser", "reader"])
@pytest.mark.parametrize(("statement", "rows"), LEGIT + POSTGRES_LEGIT)
def test_postgres_reads_still_work(pg: dict, statement: str, rows: list | None, who: str) -> None:
    import json

    code, stdout, stderr = _sql(pg[who.split()[0]], statement, *who.split()[1:])
    assert code == 0, stderr
    records = json.loads(stdout)
    assert rows is None and records or [list(r.values()) for r in records] == rows


def test_postgres_superuser_needs_the_flag(pg: dict) -> None:
    _assert_refused(*_sql(pg["super"], "SELECT count(*) FROM runs"), "pass --allow-superuser")
    assert _sql(pg["reader"], "SELECT count(*) AS n FROM runs")[1].strip() == '[{"n": 2}]'


def test_postgres_session_is_read_only_and_bounded(pg: dict) -> None:
    """The second layer alone: every transaction of the read-only engine is read-only, with a statement timeout."""
    import sqlalchemy as sa

    from bench.store.sql import read_only_engine

    engine, _ = read_only_engine(pg["reader"], timeout_s=1.5)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                connection.exec_driver_sql("COMMIT; DELETE FROM runs")
    finally:
        engine.dispose()
    code, _, stderr = _sql(pg["reader"], "SELECT count(*) FROM generate_series(1, 10000000000)", "--timeout", "0.5")
    _assert_refused(code, "", stderr, "statement timeout")


@pytest.mark.parametrize("where", ["spec_key IN (SELECT load_extension('x'))", "1 = 1 FOR UPDATE",
                                   "spec_key = (WITH d AS (DELETE FROM runs RETURNING spec_key) SELECT * FROM d)"])
def test_runs_where_is_checked_like_bench_sql(sqlite_db: tuple[str, Path], where: str) -> None:
    """`--where` is user SQL inside a SELECT: the same statement check applies; a plain filter still works."""
    url, directory = sqlite_db
    before = _sqlite_state(url, directory)
    result = runner.invoke(app, ["runs", "--db", url, "--where", where])
    _assert_refused(result.exit_code, result.stdout, result.stderr, f"--where {where!r}: refused: ")
    assert _sqlite_state(url, directory) == before
    result = runner.invoke(app, ["runs", "--db", url, "--where", "test_acc > 0.6", "--csv"])
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2, result.output
