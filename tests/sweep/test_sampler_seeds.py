"""A seeded study's workers explore different points, and one process repeats its sequence (issue 24).

With every process building the study's sampler from `seed: 0`, each worker's first trial proposed the same
parameters: two workers ran one spec twice. Trial N now draws from trial_seed(seed, N) (bench/sweep/seeding.py).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config.study import StudyModel, load_study_file, suggest_spec
from bench.run.context import RunContext
from bench.run.workbench import Workbench
from bench.sweep.seeding import trial_seed
from bench.sweep.strategy import load_with_strategy
from tests.support.limits import SAFETY_NET_S, bench_env
from tests.support.paths import REPO
from tests.support.studies import tiny_study


def study_model(tmp_path: Path, sampler: str = "random", seed: int = 0) -> StudyModel:
    path = tmp_path / f"study-{sampler}-{seed}.yaml"
    path.write_text(tiny_study("seeds", sampler, seed, trials=3))
    return load_study_file(path)


def score(lr: float) -> float:
    """A made-up val accuracy peaking at lr = 0.01, so a model-based sampler has something to follow."""
    return 1.0 - abs(math.log10(lr) + 2.0)


def draw(workers: list, model: StudyModel) -> list[float]:
    """One round: each worker (its own study object and sampler, as its own process) asks, then all tell."""
    trials = [study.ask() for study in workers]
    lrs = [suggest_spec(trial, model).hparams_dict["lr"] for trial in trials]
    for study, trial, lr in zip(workers, trials, lrs, strict=True):
        study.tell(trial, score(lr))
    return lrs


def sequence(model: StudyModel, trials: int) -> list[float]:
    """The lrs one process proposes, on a fresh storage of its own."""
    import optuna

    study = load_with_strategy(model.study_name, optuna.storages.InMemoryStorage(), model)
    return [lr for _ in range(trials) for lr in draw([study], model)]


def test_trial_seeds_are_stable_and_distinct() -> None:
    seeds = [trial_seed(0, number) for number in range(2000)]
    assert len(set(seeds)) == len(seeds) and seeds[:3] == [trial_seed(0, n) for n in range(3)]
    assert all(trial_seed(1, n) != trial_seed(0, n) for n in range(50))  # the study's seed still matters
    assert all(0 <= seed < 2**32 for seed in seeds)  # what numpy's RandomState (Optuna's samplers) accepts


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes"])
def test_workers_of_one_seeded_study_propose_distinct_points(tmp_path: Path, sampler: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = study_model(tmp_path, sampler)
    storage = optuna.storages.InMemoryStorage()  # one storage; a sampler each (the slow test: processes, SQLite)
    workers = [load_with_strategy(model.study_name, storage, model) for _ in range(3)]
    proposed = [lr for _ in range(3) for lr in draw(workers, model)]  # before: each round's three lrs were equal
    assert len(set(proposed)) == len(proposed), proposed


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes"])
def test_one_process_with_the_same_seed_proposes_the_same_sequence_twice(tmp_path: Path, sampler: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = study_model(tmp_path, sampler)
    trials = 12 if sampler == "tpe" else 6  # TPE: past its 10 random start-up trials, into the model-based ones
    first, again = sequence(model, trials), sequence(model, trials)
    other = sequence(study_model(tmp_path, sampler, seed=1), trials)
    assert first == again and len(set(first)) == trials, first
    assert first != other  # another seed, another sequence


# The same with real `bench study` processes on one SQLite file.

def run_study(tmp_path: Path, db: str, cache: Path, workers: int) -> None:
    """`bench study` in `workers` processes started together on one database (3 trials between them)."""
    path = tmp_path / "study.yaml"
    path.write_text(tiny_study("seeds", "random", 0, trials=3))
    command = [sys.executable, "-m", "bench", "study", str(path), "--db", db, "--device", "cpu", "--cache-dir",
               str(cache), "--run-dir", str(tmp_path / "runs"), "--heartbeat-interval", "1", "--grace-period", "30"]
    logs = [tmp_path / f"worker-{workers}-{i}.log" for i in range(workers)]
    processes = [subprocess.Popen(command, cwd=REPO, env=bench_env(workers=workers), stdout=log.open("w"),
                                  stderr=subprocess.STDOUT) for log in logs]
    deadline = time.monotonic() + SAFETY_NET_S  # a net against a hang: the work is three one-epoch trials
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    text = "\n".join(log.read_text()[-3000:] for log in logs)
    assert all(process.returncode == 0 for process in processes), text


def trial_lrs(db: str) -> dict[int, float]:
    import optuna

    trials = optuna.load_study(study_name="seeds", storage=db).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3, [t.state.name for t in trials]
    return {t.number: t.params["lr"] for t in trials}


@pytest.mark.slow
def test_three_bench_study_processes_run_three_different_specs(tmp_path: Path) -> None:
    import sqlalchemy as sa

    cache = tmp_path / "cache"
    model = study_model(tmp_path)
    bench = Workbench(RunContext(cache_dir=cache, device="cpu"))
    bench.probe("effnet-lite0", bench.data("digits", model.data.config()))  # features on disk before the race
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    run_study(tmp_path, shared, cache, workers=3)
    parallel = trial_lrs(shared)
    assert len(set(parallel.values())) == 3, parallel  # before: one lr, one spec, run by every worker
    engine = sa.create_engine(shared)
    with engine.connect() as connection:
        rows = list(connection.execute(sa.text("SELECT spec_key FROM runs WHERE study = 'seeds'")))
    engine.dispose()
    assert len({row[0] for row in rows}) == 3, rows  # three trained runs, one per trial
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    run_study(tmp_path, alone, cache, workers=1)
    assert trial_lrs(alone) == parallel  # the random sampler's trial N is the same point however many workers ran
