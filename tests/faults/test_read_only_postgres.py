"""A PostgreSQL database whose sessions are read-only (`ALTER DATABASE ... SET default_transaction_read_only = on`, or
the same on a role) is one line, as a read-only SQLite file is: a finished grid says so and exits 0, a grid with
cells left, a worker and a study exit 2 before any teacher loads and write nothing, and `bench report`, `bench runs`
and `bench sql` still read it. Before, the grid went on to Optuna's writes and ended in a StorageInternalError
traceback ("cannot execute INSERT in a read-only transaction")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bench.cli.app import app
from bench.config.grid import load_grid
from bench.store.reader import READER_ROLE
from bench.store.results import Store
from bench.store.session import get_engine
from bench.sweep.grid import grid_cells
from tests.faults.test_read_only_db import GRID
from tests.support.records import record

runner = CliRunner()


def _admin(url: str, *statements: str) -> None:
    """Run `statements` as the fixture's superuser (autocommit: ALTER DATABASE may not run in a transaction)."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def _count(url: str, query: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        return connection.execute(query).fetchone()[0]


def _tables(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        return {row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def frozen(postgres_url: str, tmp_path: Path, leave_out: int, how: str) -> tuple[Path, str]:
    """The grid file and a read-only URL to a database holding every cell as done but the last `leave_out`: the
    database's sessions read-only (`how` = database), or a login role's (`how` = role) with SELECT granted."""
    grid = tmp_path / "frozen.yaml"
    grid.write_text(GRID)
    store = Store(postgres_url)
    cells = grid_cells(load_grid(grid))
    for spec in cells[: len(cells) - leave_out]:
        store.save_run(replace(record(spec.key), study="frozen"))
    store.engine.dispose()
    get_engine.cache_clear()
    name = postgres_url.rsplit("/", 1)[-1]
    if how == "database":
        _admin(postgres_url, f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        return grid, postgres_url
    role = f"ro_{os.getpid()}_{name.rsplit('_', 1)[-1]}"
    _admin(postgres_url, f"CREATE ROLE {role} LOGIN", f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
           f"GRANT {READER_ROLE} TO {role}", f"ALTER ROLE {role} SET default_transaction_read_only = on")
    return grid, postgres_url.replace("//bench@", f"//{role}@")


def one_line(result) -> str:  # noqa: ANN001 - click's Result
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize(("leave_out", "how"), [(0, "database"), (1, "database"), (0, "role"), (1, "role")])
def test_a_grid_on_a_read_only_postgres_database(postgres_url: str, tmp_path: Path, leave_out: int,
                                                 how: str) -> None:
    grid, url = frozen(postgres_url, tmp_path, leave_out, how)
    tables = _tables(postgres_url)
    result = runner.invoke(app, ["run", str(grid), "--db", url, "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")])
    fix = "ALTER DATABASE" if how == "database" else "ALTER ROLE"
    if leave_out:
        assert result.exit_code == 2, result.output
        line = one_line(result)
        assert "starts every session read-only" in line and f"{fix} " in line and "RESET" in line, line
        assert "and 1 of the grid's 3 cells still need to run" in line, line
    else:
        assert result.exit_code == 0, result.output
        assert "every cell is done; the database is read-only" in result.output
        assert "3 cells, 3 already done, 0 run now" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()  # nothing loaded or written
    assert _tables(postgres_url) == tables and "studies" not in tables  # Optuna's schema was not created
    assert _count(postgres_url, "SELECT count(*) FROM runs") == 3 - leave_out
    listed = runner.invoke(app, ["runs", "--db", url, "--csv", "--columns", "spec_key,status",
                                 "--where", "status = 'done'"])
    assert listed.exit_code == 0 and listed.stdout.count("done") == 3 - leave_out, listed.output
    counted = runner.invoke(app, ["sql", "--db", url, "--json", "--allow-superuser", "--",
                                  "SELECT count(*) AS n FROM runs"])
    assert counted.exit_code == 0 and counted.stdout.strip() == f'[{{"n": {3 - leave_out}}}]', counted.output
    worker = runner.invoke(app, ["worker", "--study", "frozen", "--db", url])
    assert worker.exit_code == 2 and "a worker records every trial it takes" in one_line(worker), worker.output


def test_a_study_on_a_read_only_postgres_database_is_one_line(postgres_url: str, tmp_path: Path) -> None:
    _, url = frozen(postgres_url, tmp_path, 0, "database")
    tables = _tables(postgres_url)
    study = tmp_path / "search.yaml"
    study.write_text(yaml.safe_dump({
        "name": "search", "teacher": "effnet-lite0", "student": "projection", "method": "scratch",
        "dataset": "digits", "epochs": 1, "trials": 2, "sampler": "random",
        "data": {"image_size": 32, "train_limit": 40, "val_limit": 20, "test_limit": 20},
        "search": {"lr": {"type": "float", "low": 1.0e-4, "high": 0.1, "log": True}}}))
    result = runner.invoke(app, ["study", str(study), "--db", url, "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert "study 'search' records every trial it draws" in line and "starts every session read-only" in line, line
    assert not (tmp_path / "cache").exists() and _tables(postgres_url) == tables  # no teacher, no Optuna schema


def test_a_report_reads_a_read_only_postgres_database(postgres_url: str, tmp_path: Path) -> None:
    _, url = frozen(postgres_url, tmp_path, 0, "database")
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--db", url, "--out", str(out), "--format", "md,csv",
                                 "--where", "dataset = 'digits'"])
    assert result.exit_code == 0, result.output
    rows = (out / "runs.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3, rows  # the header and the three stored runs
    assert "resnet" in (out / "report.md").read_text()


@pytest.fixture
def standby(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(primary URL, hot standby URL): a streaming replica of the session's server, made by pg_basebackup -R."""
    import shutil
    import subprocess
    import tempfile
    import time

    from tests.support.postgres import SUPERUSER, _as_server_user, _binary_dir, _free_port, _run

    Store(postgres_url).engine.dispose()  # bench's schema on the primary, replicated below
    get_engine.cache_clear()
    url = make_url(postgres_url)
    root = Path(tempfile.mkdtemp(prefix="bench-pg-standby-"))  # the server user must reach it (not tmp_path)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    data, port, binaries = root / "data", _free_port(), _binary_dir()
    try:
        _run([str(binaries / "pg_basebackup"), "-h", url.host, "-p", str(url.port), "-U", SUPERUSER, "-D",
              str(data), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
              f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c hot_standby=on "
              "-c max_connections=300 -c fsync=off", "start"])  # a standby needs max_connections >= its primary's
        replica = url.set(port=port).render_as_string(hide_password=False)
        deadline = time.monotonic() + 60
        while "runs" not in _tables(replica):  # the schema has been replayed
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield postgres_url, replica
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                            "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_a_grid_on_a_hot_standby_is_one_line(standby: tuple[str, str], tmp_path: Path) -> None:
    primary, replica = standby
    grid = tmp_path / "frozen.yaml"
    grid.write_text(GRID)
    result = runner.invoke(app, ["run", str(grid), "--db", replica, "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert "is a hot standby" in line and "point --db at the primary" in line and "3 cells still need" in line, line
    assert not (tmp_path / "cache").exists() and "studies" not in _tables(primary)
