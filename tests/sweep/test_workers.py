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

from bench.config.grid import load_grid
from bench.data.splits import DataConfig
from bench.run.context import RunContext
from bench.run.workbench import Workbench
from bench.sweep.checkpoint import Checkpointer
from bench.sweep.grid import grid_cells, run_grid
from bench.sweep.queue import WorkerOptions
from tests.support.limits import SAFETY_NET_S, bench_env
from tests.support.paths import REPO

WORKERS = 3  # processes these tests start together: each gets bench's thread default for its share of the CPUs

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
    env = {**bench_env(workers=WORKERS), "CI": os.environ.get("CI", "")}
    command = [sys.executable, "-m", "bench", "worker", "--study", name, "--db", db, "--device", "cpu",
               "--cache-dir", str(cache), "--run-dir", str(tmp_path / "runs"),
               "--heartbeat-interval", "1", "--grace-period", str(grace)]
    log = (tmp_path / f"worker-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_all(workers: list[subprocess.Popen], tmp_path: Path, timeout: float = SAFETY_NET_S) -> None:
    """Wait for the workers; their work is a few tiny cells, so the limit is only a net against a hang."""
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


def write_grid(tmp_path: Path, cache: Path, **fields: object) -> Path:
    """Write a tiny grid and warm the feature cache in this process (so `bench run`s only read it)."""
    values = {"name": "together", "students": "[projection, bottleneck]", "methods": "[scratch]",
              "seeds": "[0]", "epochs": 1, "train": 200, **fields}
    path = tmp_path / "grid.yaml"
    path.write_text(GRID.format(**values))
    grid = load_grid(path)
    bench = Workbench(RunContext(cache_dir=cache, device="cpu"))
    bench.probe("effnet-lite0", bench.data("digits", DataConfig(**grid.specs[0].data_dict)))
    return path


def start_run(tmp_path: Path, grid_path: Path, db: str, cache: Path, *extra: str) -> subprocess.Popen:
    """`python -m bench run GRID --db URL` in its own process (default heartbeat and grace period)."""
    env = {**bench_env(workers=WORKERS), "CI": os.environ.get("CI", "")}
    command = [sys.executable, "-m", "bench", "run", str(grid_path), "--db", db, "--device", "cpu",
               "--cache-dir", str(cache), "--run-dir", str(tmp_path / "runs"), *extra]
    log = (tmp_path / f"worker-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def rows_per_key(db: str) -> dict[str, int]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(sa.text("SELECT spec_key, count(*) FROM runs GROUP BY spec_key")).all())
    finally:
        engine.dispose()


def run_now_total(tmp_path: Path) -> int:
    """The sum of "N run now" over every `bench run` summary line in the logs."""
    import re

    return sum(int(n) for n in re.findall(r"already done, (\d+) run now", logs(tmp_path)))


@pytest.mark.slow
def test_three_runs_started_together_on_a_fresh_postgres_database(
        tmp_path: Path, postgres_url: str, feature_cache: Path) -> None:
    """Optuna's schema and ours are created once, whoever comes first; the others wait and join."""
    grid_path = write_grid(tmp_path, feature_cache)
    runs = [start_run(tmp_path, grid_path, postgres_url, feature_cache) for _ in range(3)]
    wait_all(runs, tmp_path)
    keys = {spec.key for spec in grid_cells(load_grid(grid_path))}
    assert rows_per_key(postgres_url) == dict.fromkeys(keys, 1)
    assert run_now_total(tmp_path) == len(keys)


@pytest.mark.slow
def test_three_runs_on_one_sqlite_grid_enqueue_each_cell_once(tmp_path: Path, feature_cache: Path) -> None:
    """Enqueueing is atomic across processes: one trial per cell, and the summaries add up."""
    import optuna

    db = f"sqlite:///{tmp_path / 'results.db'}"
    grid_path = write_grid(tmp_path, feature_cache)
    runs = [start_run(tmp_path, grid_path, db, feature_cache) for _ in range(3)]
    wait_all(runs, tmp_path)
    keys = sorted(spec.key for spec in grid_cells(load_grid(grid_path)))
    trials = optuna.load_study(study_name="together", storage=db).trials
    assert sorted(t.user_attrs["spec_key"] for t in trials) == keys
    assert rows_per_key(db) == dict.fromkeys(keys, 1)
    assert run_now_total(tmp_path) == len(keys)


@pytest.mark.slow
def test_a_rerun_on_the_same_host_takes_over_its_dead_cell_at_once(tmp_path: Path, feature_cache: Path) -> None:
    """kill -9 `bench run` mid-cell; the next `bench run` resumes it without waiting out its grace period (2 h
    here, so that 'at once' is told from 'waited' by far more than a loaded machine's slowness)."""
    db = f"sqlite:///{tmp_path / 'results.db'}"
    grid_path = write_grid(tmp_path, feature_cache, students="[resnet]", epochs=3)
    spec = load_grid(grid_path).specs[0]
    first = start_run(tmp_path, grid_path, db, feature_cache)
    deadline = time.monotonic() + SAFETY_NET_S
    while (Checkpointer(tmp_path / "runs", spec.key).saved_epoch() or 0) < 1:
        assert time.monotonic() < deadline and first.poll() is None, logs(tmp_path)
        time.sleep(0.05)
    first.kill()
    first.wait(timeout=30)
    started = time.monotonic()
    grace = 7200
    wait_all([start_run(tmp_path, grid_path, db, feature_cache, "--grace-period", str(grace))], tmp_path)
    assert time.monotonic() - started < grace
    rows = {row[0]: row for row in stored_runs(db)}
    assert rows[spec.key][1] == "done" and rows[spec.key][2] >= 1


def test_worker_for_a_missing_study_creates_nothing_in_sqlite(tmp_path: Path) -> None:
    """No database file is created for a study that does not exist, and an existing one is not touched."""
    from bench.store.results import Store

    missing = tmp_path / "missing.db"
    result = run_worker_cli(f"sqlite:///{missing}", "nope")
    assert result.returncode == 2 and "no such study" in result.stderr and "Traceback" not in result.stderr
    assert not missing.exists() and list(tmp_path.iterdir()) == []
    existing = tmp_path / "results.db"
    Store(f"sqlite:///{existing}").engine.dispose()  # our tables only, no Optuna schema
    before = (existing.read_bytes(), existing.stat().st_mtime_ns)
    result = run_worker_cli(f"sqlite:///{existing}", "nope")
    assert result.returncode == 2 and "the database has no studies" in result.stderr, result.stderr
    assert (existing.read_bytes(), existing.stat().st_mtime_ns) == before
    assert "studies" not in sa.inspect(sa.create_engine(f"sqlite:///{existing}")).get_table_names()


def test_worker_for_a_missing_study_creates_no_tables_in_postgres(postgres_url: str) -> None:
    result = run_worker_cli(postgres_url, "nope")
    assert result.returncode == 2 and "no such study" in result.stderr, result.stderr
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.connect() as connection:  # Optuna's enum types would be left behind too
            assert connection.execute(sa.text("SELECT count(*) FROM pg_type WHERE typtype = 'e'")).scalar() == 0
    finally:
        engine.dispose()


def run_worker_cli(db: str, study: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bench", "worker", "--study", study, "--db", db],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


OPEN_TOGETHER = """
import sys, time
from pathlib import Path
from bench.sweep.queue import WorkerOptions, open_storage
from bench.store.results import Store
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
open_storage(url, WorkerOptions())
Store(url)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_fresh_database_at_the_same_instant(tmp_path: Path, backend: str,
                                                                request: pytest.FixtureRequest) -> None:
    """Three processes create Optuna's schema and ours at once: none crashes, each schema exists once."""
    db = f"sqlite:///{tmp_path / 'results.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, db, str(tmp_path / f"ready{i}"), str(go)],
                                  cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for i in range(3)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 3, "\n".join(errors)


def test_a_worker_process_is_dead_here_only_when_it_is_provably_gone() -> None:
    """Same machine and pid namespace: an exited pid or a reused one is dead; anything else is left to heartbeats."""
    from bench.sweep.queue import is_dead_here, worker_process

    me = worker_process(7)
    if me is None:
        pytest.skip("no /proc here: dead workers are found by heartbeat only")
    assert not is_dead_here(me, 7)  # this process is alive
    assert not is_dead_here(me, 8)  # a record copied onto a retried trial says nothing about that trial
    assert not is_dead_here({**me, "host": "elsewhere"}, 7) and not is_dead_here({**me, "boot_id": "x"}, 7)
    assert is_dead_here({**me, "start": me["start"] - 1}, 7)  # our pid, but another process's start: reused
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait(timeout=60)
    assert is_dead_here({**me, "pid": exited.pid}, 7)
    assert not is_dead_here(None, 7) and not is_dead_here({"trial_id": 7}, 7)


TRY_LOCK = """
import sys
from bench.store.lock import database_lock
from bench.core.errors import BenchError
try:
    with database_lock(sys.argv[1], "schema", timeout_s=0.5):
        print("got it")
except BenchError as error:
    print(error)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_lock_excludes_other_processes_and_nests_in_one(tmp_path: Path, backend: str,
                                                                 request: pytest.FixtureRequest) -> None:
    from bench.store.lock import database_lock

    db = f"sqlite:///{tmp_path / 'results.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def other_process() -> str:
        return subprocess.run([sys.executable, "-c", TRY_LOCK, db], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60).stdout

    with database_lock(db, "schema"), database_lock(db, "schema"):  # nesting in one process does not wait
        assert "another bench process held it" in other_process()
    assert other_process().strip() == "got it"
    if backend == "sqlite":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db-lock"]  # the database is not opened


def test_worker_on_an_unreachable_database_says_so_in_one_line() -> None:
    result = run_worker_cli("postgresql://nobody:secret@127.0.0.1:1/nodb", "grid")
    assert result.returncode == 2 and "cannot connect" in result.stderr and "***" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
