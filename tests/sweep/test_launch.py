"""`bench launch` (submitit, local executor here; SLURM in tests/slurm) and `bench status`: every cell done once by
the launched workers, with the same numbers as one process, and the SLURM options checked before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.errors import BenchError
from bench.sweep.launch import SlurmResources, minutes, slurm_args
from tests.support.paths import REPO
from tests.sweep.test_workers import write_grid


def test_time_limits_in_slurm_forms_become_minutes() -> None:
    assert [minutes(v) for v in ("90", "1:30:00", "45:30", "1-00:00:00", "2-12", "0:00:30")] == [
        90, 90, 46, 1440, 3600, 1]
    for bad in ("", "ninety", "1:2:3:4", "0"):
        with pytest.raises(BenchError, match="--time"):
            minutes(bad)


def test_slurm_resources_become_submitit_parameters() -> None:
    extra = slurm_args(["exclude=node7", "--gres-flags=enforce-binding"])
    assert extra == {"exclude": "node7", "gres_flags": "enforce-binding"}
    found = SlurmResources(partition="gpu", gpus_per_worker=2, cpus_per_worker=8, mem="16G", time_min=30,
                           qos="high", extra=extra).parameters()
    assert found == {"time": 30, "signal_delay_s": 120, "partition": "gpu", "cpus_per_task": 8, "mem": "16G",
                     "qos": "high", "gpus_per_node": 2, "additional_parameters": extra}
    for bad in ("exclude", "=x", "1x=2"):
        with pytest.raises(BenchError, match="--slurm-arg"):
            slurm_args([bad])


def bench(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def scores(db: str) -> dict[str, tuple]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return {key: (status, val_acc, test_acc) for key, status, val_acc, test_acc in connection.execute(
                sa.text("SELECT spec_key, status, val_acc, test_acc FROM runs"))}
    finally:
        engine.dispose()


def recorded_threads(db: str) -> set[int]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(sa.text("SELECT threads FROM runs"))}
    finally:
        engine.dispose()


def test_bad_launch_options_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: x\n")
    db = tmp_path / "r.db"
    for args, field in ((["--executor", "pbs"], "--executor"), (["--workers", "0"], "--workers"),
                        (["--time", "soon"], "--time"), (["--slurm-arg", "exclude"], "--slurm-arg")):
        result = CliRunner().invoke(app, ["launch", str(grid), "--db", f"sqlite:///{db}", *args])
        assert result.exit_code == 2 and field in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not db.exists()


@pytest.mark.slow
def test_local_launch_runs_every_cell_once_as_one_process_would(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    grid = write_grid(tmp_path, cache, name="launched")
    db, alone = f"sqlite:///{tmp_path / 'launched.db'}", f"sqlite:///{tmp_path / 'alone.db'}"
    common = ["--device", "cpu", "--cache-dir", str(cache), "--run-dir", str(tmp_path / "runs"), "--threads", "2"]
    launched = bench("launch", str(grid), "--executor", "local", "--workers", "2", "--db", db,
                     "--log-dir", str(tmp_path / "logs"), *common)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert launched.stdout.count("worker on grid launched") == 2 and "bench status launched" in launched.stdout
    assert "2 worker(s) on local, 2 threads each" in launched.stdout
    assert recorded_threads(db) == {2}  # bench launch --threads reaches its workers
    assert bench("run", str(grid), "--db", alone, *common).returncode == 0
    together, single = scores(db), scores(alone)
    assert len(together) == 3 and {status for status, *_ in together.values()} == {"done"}
    assert together == single  # the same cells, the same numbers, each stored once
    status = bench("status", "launched", "--db", db, "--json", timeout=120)
    assert status.returncode == 0, status.stderr
    assert '"state": "done"' in status.stdout and status.stdout.count('"state"') == 3
