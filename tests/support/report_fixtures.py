"""A results database filled by a real tiny grid, plus failed/pruned rows and an Optuna study with params."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from bench.config.grid import load_grid
from bench.run.context import RunContext
from bench.store.records import EpochRecord, RunRecord
from bench.store.results import Store
from bench.sweep.grid import run_grid

GRID = """
name: report-grid
teacher: effnet-lite0
student: [projection, resnet]
method: [scratch, kd]
dataset: digits
seeds: [0, 1]
epochs: 2
data:
  image_size: 64
  student_image_size: 16
  train_limit: 100
  val_limit: 40
  test_limit: 60
hparams:
  batch_size: 40
"""
TUNE_STUDY = "tune"


def unfinished(key: str, student: str, method: str, epochs: int, seed: int, status: str,
               like: RunRecord | None = None) -> RunRecord:
    """A run that did not finish, as the runner or a pruner would store it (in the setting of `like`)."""
    return RunRecord(
        spec_key=key, study="report-grid", teacher="effnet-lite0", student=student, student_kind="",
        method=method, dataset="digits", seed=seed, epochs=epochs,
        hparams=like.hparams if like else {"batch_size": 32},
        data_config=like.data_config if like else {"image_size": 64}, status=status,
        error=f"RuntimeError: {status} on purpose\nsecond line",
        finished_at=datetime(2026, 1, 1, 12),
        epoch_records=(EpochRecord(0, 2.0, {"ce": 2.0}, 0.1, 0.5),) if status == "pruned" else (),
    )


def add_tune_study(db_url: str) -> None:
    """A two-objective Optuna study with sampled parameters (pure Python objective, fixed seed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=TUNE_STUDY, storage=db_url, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("width", 8, 64)
        return 1.0 - 0.1 * abs(math.log10(lr) + 2) + 0.005 * width, float(width)  # accuracy vs size

    study.optimize(objective, n_trials=8)


def build_database(root: Path) -> str:
    """Run the grid, then add a failed, a pruned and a never-finished cell, and the tune study."""
    grid_path = root / "grid.yaml"
    grid_path.write_text(GRID)
    db_url = f"sqlite:///{root / 'results.db'}"
    summary = run_grid(load_grid(grid_path), db_url, RunContext(cache_dir=root / "cache", device="cpu"))
    assert (summary.done, summary.failed) == (9, 0)
    store = Store(db_url)
    resnet_kd, projection_kd = store.runs(student="resnet", method="kd")[0], store.runs(student="projection",
                                                                                        method="kd")[0]
    store.save_run(unfinished("failed-resnet-kd", "resnet", "kd", 2, 2, "failed", resnet_kd))  # same cell, seed 2
    store.save_run(unfinished("pruned-proj-kd", "projection", "kd", 2, 2, "pruned", projection_kd))
    store.save_run(unfinished("failed-bottleneck", "bottleneck", "kd", 2, 0, "failed"))
    add_tune_study(db_url)
    return db_url
