"""Interrupted and dead cells go first: after kill -9, Ctrl-C or SIGTERM (a SLURM preemption) mid-cell, the restart
claims that cell before every fresh one and resumes it from its checkpoint within seconds (it used to wait behind the
whole queue)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.config.grid import load_grid
from bench.core.spec import ExperimentSpec
from bench.sweep.checkpoint import Checkpointer
from bench.sweep.optuna_private import trial_id
from bench.sweep.queue import RESUMES_ATTR, WorkerOptions, claim_waiting, open_storage, open_study
from tests.sweep.test_workers import logs, start_run, wait_all, write_grid

RESUME_LIMIT_S = 60.0  # a restart takes the stopped cell back in seconds (start-up included; was 158-231 s)


def test_a_retried_or_interrupted_cell_is_claimed_before_fresh_ones(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'q.db'}", WorkerOptions(run_dir=tmp_path / "runs"))
    study = open_study("q", storage)
    for index in range(4):
        study.enqueue_trial({}, user_attrs={"cell": index})
    first = claim_waiting(study, storage)
    assert first.user_attrs["cell"] == 0
    storage.set_trial_state_values(trial_id(first), state=__import__("optuna").trial.TrialState.FAIL)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial_id(first)))  # a dead worker's retry
    assert claim_waiting(study, storage).user_attrs["cell"] == 0  # the retry (trial 4), not cell 1
    study.enqueue_trial({}, user_attrs={"cell": 9, RESUMES_ATTR: 2})  # what Ctrl-C re-enqueues
    assert claim_waiting(study, storage).user_attrs["cell"] == 9
    assert [claim_waiting(study, storage).user_attrs["cell"] for _ in range(3)] == [1, 2, 3]
    assert claim_waiting(study, storage) is None


def running_trials(db: str) -> set[int]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT trial_id FROM trials WHERE state = 'RUNNING'")).scalars())
    finally:
        engine.dispose()


def done_order(db: str) -> list[tuple[str, int | None]]:
    """(spec_key, resumed_from_epoch) of done rows, in the order they were stored."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(
                "SELECT spec_key, resumed_from_epoch FROM runs WHERE status = 'done' ORDER BY finished_at, id"))]
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["kill -9", "Ctrl-C", "SIGTERM"])
def test_a_restart_resumes_the_stopped_cell_first_and_within_seconds(tmp_path: Path, stop: str) -> None:
    cache = tmp_path / "cache"
    db = f"sqlite:///{tmp_path / 'results.db'}"
    grid_path = write_grid(tmp_path, cache, students="[resnet, projection, bottleneck]", methods="[scratch, kd]",
                           epochs=3, train=100)
    specs = load_grid(grid_path).specs
    first = start_run(tmp_path, grid_path, db, cache)
    deadline = time.monotonic() + 180
    stopped: ExperimentSpec | None = None
    while stopped is None:  # stop it in the middle of the first cell that saved an epoch
        assert time.monotonic() < deadline and first.poll() is None, logs(tmp_path)
        stopped = next((spec for spec in specs if (Checkpointer(tmp_path / "runs", spec.key).saved_epoch() or 0)
                        >= 1), None)
        time.sleep(0.02)
    first.send_signal({"kill -9": signal.SIGKILL, "Ctrl-C": signal.SIGINT, "SIGTERM": signal.SIGTERM}[stop])
    first.wait(timeout=60)
    dead = running_trials(db)  # kill -9 leaves its trial RUNNING; Ctrl-C and SIGTERM (a preemption) fail it at once
    assert len(dead) == (1 if stop == "kill -9" else 0)
    before = {key for key, _ in done_order(db)}
    started = time.monotonic()
    second = start_run(tmp_path, grid_path, db, cache)
    while not running_trials(db) - dead:  # the first cell the restart claims (the order below says which)
        assert second.poll() is None and time.monotonic() - started < 180, logs(tmp_path)
        time.sleep(0.05)
    resumed_after = time.monotonic() - started
    print(f"{stop}: the restart took the stopped cell back after {resumed_after:.1f} s")
    wait_all([second], tmp_path, timeout=240)
    after = [(key, epoch) for key, epoch in done_order(db) if key not in before]
    assert after[0][0] == stopped.key and after[0][1] >= 1, after  # first, from its checkpoint
    assert resumed_after < RESUME_LIMIT_S, resumed_after
    assert len(after) + len(before) == len({spec.key for spec in specs}) + 1  # every cell (and the probe) once
