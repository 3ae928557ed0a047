"""A read-only results database is one line: a finished grid says so and exits 0, a grid with cells left or a
worker exits 2, reports still read it, and a schema that would need migrating names both revisions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.config.grid import load_grid
from bench.store.results import Store
from bench.store.session import get_engine
from bench.sweep.grid import grid_cells
from tests.faults.conftest import remount_read_only
from tests.support.records import record

GRID = """
name: frozen
teacher: effnet-lite0
student: [bottleneck, resnet]
method: kd
dataset: digits
seeds: [0]
epochs: 1
data: {image_size: 32, train_limit: 40, val_limit: 20, test_limit: 20}
"""


def stored_grid(point: Path, tmp_path: Path, leave_out: int) -> tuple[Path, str]:
    """The grid file and a database on the mount holding every cell as done but the last `leave_out`."""
    grid = tmp_path / "frozen.yaml"
    grid.write_text(GRID)
    url = f"sqlite:///{point / 'results.db'}"
    store = Store(url)
    cells = grid_cells(load_grid(grid))
    for spec in cells[: len(cells) - leave_out]:
        store.save_run(replace(record(spec.key), study="frozen"))
    store.engine.dispose()
    get_engine.cache_clear()
    return grid, url


@pytest.mark.parametrize("leave_out", [0, 1])
def test_a_grid_on_a_read_only_database(tmpfs, tmp_path: Path, leave_out: int) -> None:  # noqa: ANN001
    point = tmpfs("4m")
    grid, url = stored_grid(point, tmp_path, leave_out)
    remount_read_only(point)
    result = CliRunner().invoke(app, ["run", str(grid), "--db", url, "--device", "cpu",
                                      "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")])
    if leave_out:
        assert result.exit_code == 2, result.output
        assert "read-only file system, and 1 of the grid's 3 cells still need to run" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    else:
        assert result.exit_code == 0, result.output
        assert "every cell is done; the database is read-only" in result.output
        assert "3 cells, 3 already done, 0 run now" in result.output
    assert not (tmp_path / "cache").exists()  # nothing was loaded or written
    report = CliRunner().invoke(app, ["runs", "--db", url, "--csv", "--columns", "spec_key,status"])
    assert report.exit_code == 0 and report.stdout.count("done") == 3 - leave_out
    worker = CliRunner().invoke(app, ["worker", "--study", "frozen", "--db", url])
    assert worker.exit_code == 2 and "needs a writable database" in worker.output, worker.output


def test_a_read_only_database_that_needs_migrating_is_one_line(tmpfs) -> None:  # noqa: ANN001
    import sqlite3

    point = tmpfs("2m")
    connection = sqlite3.connect(point / "old.db")
    connection.execute("CREATE TABLE bench_alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    connection.commit()
    connection.close()
    remount_read_only(point)
    with pytest.raises(Exception) as refused:
        Store(f"sqlite:///{point / 'old.db'}")
    line = str(refused.value)
    assert type(refused.value).__name__ == "BenchError" and "the schema needs migrating to" in line
    assert "Read-only file system" in line and "\n" not in line
