"""`bench launch --executor slurm` against the live SLURM, and the preemption scenario (shared by the tests and
benchmarks/bench_preemption.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from bench.core.names import SPEC_KEY_ATTR, WORKER_ATTR, WORKER_JOB_ATTR
from bench.sweep.checkpoint import Checkpointer
from tests.support.paths import REPO
from tests.support.slurm import Slurm

GRID = """
name: {name}
teacher: effnet-lite0
student: {students}
method: {methods}
dataset: digits
seeds: [{seed}]
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


def write_grid(folder: Path, name: str, students: str, methods: str, epochs: int, train: int, seed: int = 0) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(GRID.format(name=name, students=students, methods=methods, epochs=epochs, train=train, seed=seed))
    return path


def bench_cli(slurm: Slurm, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m bench ...` with the cluster's SLURM_CONF (the jobs inherit the environment through sbatch)."""
    env = {**slurm.env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def launch(slurm: Slurm, grid: Path, db: str, folder: Path, workers: int, *extra: str) -> str:
    """`bench launch GRID --executor slurm --workers N`; returns the array job id."""
    result = bench_cli(slurm, "launch", str(grid), "--executor", "slurm", "--workers", str(workers), "--db", db,
                       "--device", "cpu", "--cache-dir", str(folder / "cache"), "--run-dir", str(folder / "runs"),
                       "--log-dir", str(folder / "logs"), "--cpus-per-worker", "1", "--time", "20", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"job\(s\) (\d+)_0", result.stdout)
    assert found, result.stdout
    return found.group(1)


def job_logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
                     for p in sorted((folder / "logs").glob("*_log.*")))


def wait_jobs_gone(slurm: Slurm, job: str, folder: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while slurm.run("squeue", "-h", "-j", job, "-o", "%i %T").strip():
        if time.monotonic() > deadline:
            slurm.run("scancel", job)
            raise AssertionError(f"job {job} still queued after {limit_s:.0f} s\n{job_logs(folder)}")
        time.sleep(1)


def running_cells(db: str, study: str) -> dict[str, str]:
    """spec key -> the SLURM job (array task) running it now."""
    import optuna
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name=study, storage=db).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {t.user_attrs.get(SPEC_KEY_ATTR, ""): str(t.user_attrs.get(WORKER_JOB_ATTR)) for t in trials}


def worker_pid(db: str, study: str, key: str) -> int:
    """The pid of the worker process running the cell (its `worker` user attr is host:pid)."""
    import optuna
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name=study, storage=db).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    worker = next(t.user_attrs[WORKER_ATTR] for t in trials if t.user_attrs.get(SPEC_KEY_ATTR) == key)
    return int(worker.rsplit(":")[-1])


def done_rows(db: str) -> list[tuple]:
    """(spec_key, status, resumed_from_epoch, val_acc, test_acc) of every run row."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(
                "SELECT spec_key, status, resumed_from_epoch, val_acc, test_acc FROM runs"))]
    finally:
        engine.dispose()


def preempt_mid_cell(slurm: Slurm, db: str, study: str, folder: Path, limit_s: float = 900,
                     signal: str = "TERM") -> tuple[str, str, float]:
    """Wait for a cell that saved an epoch, `scancel --signal=SIGNAL` its array task, and time how long until
    another task runs it; (spec key, preempted task, seconds)."""
    deadline = time.monotonic() + limit_s
    while True:
        assert time.monotonic() < deadline, f"no cell saved an epoch in {limit_s:.0f} s\n{job_logs(folder)}"
        running = running_cells(db, study)
        ready = [(key, job) for key, job in running.items()
                 if (Checkpointer(folder / "runs", key).saved_epoch() or 0) >= 1]
        if ready:
            break
        time.sleep(0.2)
    key, job = ready[0]
    signalled, signalled_at = time.monotonic(), time.time()
    if signal == "KILL":  # a dying node: SIGKILL straight to the worker (SLURM's own KILL sends SIGTERM first)
        os.kill(worker_pid(db, study, key), 9)
    else:
        slurm.run("scancel", f"--signal={signal}", job)
    while True:
        # a trial of the cell started by another task, running or already finished: a resumed cell with one epoch
        # left can start and finish between two polls, so RUNNING alone would miss it
        started = taken_by_another(db, study, key, job)
        if started is not None:
            return key, job, started - signalled_at
        assert time.monotonic() - signalled < limit_s, f"the preempted cell was not taken back\n{job_logs(folder)}"
        time.sleep(0.1)


def taken_by_another(db: str, study: str, key: str, job: str) -> float | None:
    """When (epoch seconds) a trial of cell KEY first started on a task other than JOB, in any state; None if never."""
    import optuna

    trials = optuna.load_study(study_name=study, storage=db).get_trials(deepcopy=False)
    starts = [t.datetime_start.timestamp() for t in trials
              if t.user_attrs.get(SPEC_KEY_ATTR) == key and t.datetime_start is not None
              and t.user_attrs.get(WORKER_JOB_ATTR) is not None and str(t.user_attrs[WORKER_JOB_ATTR]) != job]
    return min(starts, default=None)


def how_retried(db: str, study: str, key: str) -> set[str]:
    """How the cell's later trials came back: `resumes_trial` (handed back by a stop signal) and/or `failed_trial`
    (failed as dead, then retried by Optuna's callback)."""
    import optuna

    from bench.sweep.queue import RESUMES_ATTR

    found: set[str] = set()
    for trial in optuna.load_study(study_name=study, storage=db).trials:
        if trial.user_attrs.get(SPEC_KEY_ATTR) == key:
            found |= {RESUMES_ATTR} & set(trial.user_attrs) | {"failed_trial"} & set(trial.system_attrs)
    return found
