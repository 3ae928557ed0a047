"""Many workers on one grid (PostgreSQL and SQLite): every cell once, a killed worker's run resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.checkpoint import Checkpointer
from bench.data import DataConfig
from bench.grid import load_grid
from bench.optuna_db import WorkerOptions
from bench.runner import grid_cells, run_grid
from bench.workbench import RunContext, Workbench
from tests.conftest import REPO

GRID = """
name: {name}
teacher: effnet-lite0
student: {students}
method: {methods}
dataset: digits
seeds: {seeds}
epochs: {epochs}
data:
  image_size: 64
  student_image_size: 16
  train_limit: {train}
  val_limit: 100
  test_limit: 200
hparams:
  batch_size: 32
"""


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for every test here: the digits features are computed once."""
    return tmp_path_factory.mktemp("worker-cache")


def enqueue_grid(tmp_path: Path, db: str, cache: Path, **fields: object):  # noqa: ANN201
    """Write the grid, warm the feature cache in this process, enqueue the cells; returns the grid."""
    values = {"name": "shared", "students": "[projection, bottleneck]", "methods": "[scratch, kd]",
              "seeds": "[0]", "epochs": 2, "train": 400, **fields}
    path = tmp_path / "grid.yaml"
    path.write_text(GRID.format(**values))
    grid = load_grid(path)
    context = RunContext(cache_dir=cache, device="cpu")
    bench = Workbench(context)
    data = bench.data("digits", DataConfig(**grid.specs[0].data_dict))
    bench.probe("effnet-lite0", data)  # features + probe on disk: workers only read them
    summary = run_grid(grid, db, context, options=WorkerOptions(run_dir=tmp_path / "runs"), enqueue_only=True)
    assert summary.done == 0
    return grid


def start_worker(tmp_path: Path, db: str, cache: Path, name: str = "shared", grace: int = 4) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CI": os.environ.get("CI", "")}
    command = [sys.executable, "-m", "bench", "worker", "--study", name, "--db", db, "--device", "cpu",
               "--cache-dir", str(cache), "--run-dir", str(tmp_path / "runs"),
               "--heartbeat-interval", "1", "--grace-period", str(grace)]
    log = (tmp_path / f"worker-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_all(workers: list[subprocess.Popen], tmp_path: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            raise AssertionError("workers did not finish:\n" + logs(tmp_path)) from None
    assert all(worker.returncode == 0 for worker in workers), logs(tmp_path)


def logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text()[-3000:] for path in sorted(tmp_path.glob("worker-*.log")))


def stored_runs(db: str) -> list[tuple]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(
                "SELECT spec_key, status, resumed_from_epoch, val_acc, "
                "(SELECT count(*) FROM run_epochs e WHERE e.run_id = runs.id) FROM runs")))
    finally:
        engine.dispose()


def trial_states(db: str, name: str) -> list[str]:
    import optuna

    return [t.state.name for t in optuna.load_study(study_name=name, storage=db).trials]


@pytest.mark.slow
def test_three_workers_on_postgres_every_cell_once_and_a_killed_one_resumed(
        tmp_path: Path, postgres_url: str, feature_cache: Path) -> None:
    """Three workers share a grid; kill -9 the one in a ResNet cell after epoch 1, start another: it resumes."""
    grid = enqueue_grid(tmp_path, postgres_url, feature_cache, students="[projection, bottleneck, resnet]",
                        epochs=4)
    keys = {spec.key for spec in grid_cells(grid)}
    assert len(keys) == 7  # probe + 3 students x 2 methods
    workers = [start_worker(tmp_path, postgres_url, feature_cache) for _ in range(3)]
    victim, spec_key, killed_at = kill_a_resnet_worker(tmp_path, postgres_url, grid, workers)
    workers.remove(victim)
    workers.append(start_worker(tmp_path, postgres_url, feature_cache))
    wait_all(workers, tmp_path)
    rows = {row[0]: row for row in stored_runs(postgres_url)}
    assert sorted(rows) == sorted(keys)  # each cell stored once, none lost
    assert all(row[1] == "done" and row[3] > 0.3 for row in rows.values())
    assert rows[spec_key][2] == killed_at  # resumed from the dead worker's last checkpoint, not from zero
    assert rows[spec_key][4] == 4  # every epoch recorded once: the restored ones plus the rest
    assert all(row[2] is None for key, row in rows.items() if key != spec_key)
    states = trial_states(postgres_url, "shared")
    assert sorted(states) == ["COMPLETE"] * 7 + ["FAIL"]  # only the killed trial ran twice (as its retry)
    assert not any((tmp_path / "runs").iterdir())  # checkpoints are cleared once rows are stored
    text = logs(tmp_path)
    assert text.count("worker on grid shared:") == 3 and "resumed after epoch" in text  # the victim never reported


def kill_a_resnet_worker(tmp_path: Path, db: str, grid, workers: list[subprocess.Popen]):  # noqa: ANN001, ANN201
    """SIGKILL the worker of a ResNet cell the moment that cell's first epoch checkpoint appears."""
    import optuna

    resnet = [spec.key for spec in grid.specs if spec.student == "resnet"]
    pids: dict[str, int] = {}  # spec key -> pid of the worker that claimed it (trial user attr "worker")
    deadline = time.monotonic() + 150
    while True:
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), logs(tmp_path)
        if len(pids) < len(resnet):
            for trial in optuna.load_study(study_name="shared", storage=db).trials:
                if trial.user_attrs.get("spec_key") in resnet and "worker" in trial.user_attrs:
                    pids[trial.user_attrs["spec_key"]] = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
        ready = [key for key in pids if (Checkpointer(tmp_path / "runs", key).saved_epoch() or 0) >= 1]
        if ready:
            break
        time.sleep(0.1)
    os.kill(pids[ready[0]], signal.SIGKILL)
    victim = next(w for w in workers if w.pid == pids[ready[0]])
    victim.wait(timeout=30)
    killed_at = Checkpointer(tmp_path / "runs", ready[0]).saved_epoch()
    assert killed_at is not None and 1 <= killed_at < 4
    return victim, ready[0], killed_at


@pytest.mark.slow
def test_two_workers_on_sqlite_lose_nothing(tmp_path: Path, feature_cache: Path) -> None:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    grid = enqueue_grid(tmp_path, db, feature_cache)
    workers = [start_worker(tmp_path, db, feature_cache) for _ in range(2)]
    wait_all(workers, tmp_path)
    assert "database is locked" not in logs(tmp_path)
    rows = stored_runs(db)
    assert sorted(row[0] for row in rows) == sorted(spec.key for spec in grid_cells(grid))
    assert len(rows) == 5 and all(row[1] == "done" for row in rows)
    assert trial_states(db, "shared") == ["COMPLETE"] * 5
