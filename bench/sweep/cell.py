"""Run one cell and store its row: the step every grid cell and every study trial goes through."""

from __future__ import annotations

import errno
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.core.errors import BenchError
from bench.core.spec import ExperimentSpec, probe_spec
from bench.data.splits import DataConfig
from bench.run.kept import Kept
from bench.run.provenance import utcnow
from bench.run.run_spec import run_spec
from bench.run.train import NonFiniteError, check_finite
from bench.run.workbench import Workbench
from bench.store.records import EpochRecord, RunRecord
from bench.sweep.checkpoint import Checkpointer
from bench.sweep.context import Sweep
from bench.sweep.progress import PlainProgress


@dataclass
class CellCounts:
    """What one process did with the cells it took."""

    done: int = 0
    failed: int = 0
    skipped: int = 0  # another worker had stored the spec already


def probe_cells(teachers: Iterable[str], datasets: Iterable[str], data: dict[str, object]) -> list[ExperimentSpec]:
    """The teacher-probe cell of each (teacher, dataset) under one data config, in order."""
    datasets = list(datasets)
    return [probe_spec(teacher, dataset, data) for teacher in teachers for dataset in datasets]


def preflight(bench: Workbench, cells: Iterable[ExperimentSpec]) -> None:
    """Load every teacher and dataset once, so missing weights or data stop before any run."""
    for spec in cells:
        bench.teacher(spec.teacher)
        data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
        topk = data.config.teacher_view_topk
        if topk is not None and data.config.teacher_views == "cached" and topk > data.num_classes:
            raise BenchError(f"field 'data.teacher_view_topk': {topk} is more than the {data.num_classes} classes of "
                             f"{spec.dataset!r}; use at most {data.num_classes} or null")


def cell_progress(console: Console) -> Progress | PlainProgress:
    """A bar for the grid and one per running cell; plain progress lines (every 30 s and at each task's end)
    when the console is not a terminal (a log under nohup or SLURM)."""
    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console)


def run_and_store(sweep: Sweep, spec: ExperimentSpec, number: int | None,
                  on_epoch: Callable[[EpochRecord], None] | None = None,
                  evaluate_test: bool = True, trial: Any = None) -> tuple[RunRecord, bool]:
    """Run the spec (resuming its checkpoint), check every number is finite, store its row; (record, written).

    A run is done only if all its numbers are finite and its row was stored: a NaN or a storage error raises.
    Its artifact (the trained student, under the Optuna `trial` when given) is written before the row and removed
    if the row is not stored. The checkpoint is cleared once the row is stored, or when Optuna prunes the run.
    """
    import optuna

    checkpoint = Checkpointer(sweep.options.run_dir, spec.key, spec.epochs)
    kept: list[Kept] = []
    try:
        record = run_spec(spec, sweep.bench, sweep.name, number, on_epoch=on_epoch, checkpoint=checkpoint,
                          evaluate_test=evaluate_test, keep=kept.append if sweep.artifacts.keeps_any else None)
    except optuna.TrialPruned:
        checkpoint.clear()
        raise
    return store_done(sweep, record, kept, trial, checkpoint)


def store_done(sweep: Sweep, record: RunRecord, kept: list[Kept], trial: Any, checkpoint: Checkpointer
               ) -> tuple[RunRecord, bool]:
    """Check a finished run's numbers, write its artifact, store its row, clear its checkpoint; (record, written)."""
    artifacts = sweep.artifacts
    record = check_finite(replace(record, study=sweep.name))
    fields = artifacts.save(kept[-1], record, sweep.store.engine, trial, sweep.storage) if kept else {}
    record = replace(record, **fields)
    try:
        written = sweep.store.save_run(record)
    except BaseException:
        artifacts.remove(fields)  # no row points at it: a failed run keeps nothing
        raise
    if written:
        artifacts.after_stored(record, sweep.store.engine)
    else:
        artifacts.remove(fields)  # another worker stored this spec (and its own artifact) first
    checkpoint.clear()
    return record, written


def run_and_store_bundle(sweep: Sweep, specs: list[ExperimentSpec], trials: list[Any],
                         on_epochs: list[Callable[[EpochRecord], None] | None]
                         ) -> list[tuple[RunRecord, bool] | Exception]:
    """Train grid cells together (bench/run/run_bundle.py) and store each as run_and_store stores one: per cell
    its (record, written), or the exception it failed with; the other cells go on."""
    from bench.run.run_bundle import CellHooks, run_bundle

    checkpoints = [Checkpointer(sweep.options.run_dir, spec.key, spec.epochs) for spec in specs]
    kept: list[list[Kept]] = [[] for _ in specs]
    hooks = [CellHooks(trial.number, on_epoch, checkpoint, own.append if sweep.artifacts.keeps_any else None)
             for trial, on_epoch, checkpoint, own in zip(trials, on_epochs, checkpoints, kept, strict=True)]
    outcomes: list[tuple[RunRecord, bool] | Exception] = []
    for result, own, trial, checkpoint in zip(run_bundle(specs, sweep.bench, sweep.name, hooks), kept, trials,
                                              checkpoints, strict=True):
        try:
            if isinstance(result, Exception):
                raise result
            outcomes.append(store_done(sweep, result, own, trial, checkpoint))
        except BenchError:
            raise
        except Exception as error:  # noqa: BLE001 - a NaN or a storage error fails this cell alone
            outcomes.append(error)
    return outcomes


def failed_record(spec: ExperimentSpec, study: str, error: BaseException, number: int | None,
                  status: str = "failed") -> RunRecord:
    """A row for a cell that raised (or was pruned): the spec and the error, no metrics."""
    return RunRecord(
        spec_key=spec.key, study=study, teacher=spec.teacher, student=spec.student,
        student_kind="", method=spec.method, dataset=spec.dataset, seed=spec.seed,
        epochs=spec.epochs, hparams=spec.hparams_dict, data_config=spec.data_dict,
        status=status, error=f"{type(error).__name__}: {error}"[:2000], trial_number=number,
        finished_at=utcnow(),
    )


def out_of_space(error: BaseException) -> bool:
    """A write the file system refused (full disk, quota, read-only mount): the reason is the message, no bug."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def store_failure(sweep: Sweep, spec: ExperimentSpec, error: Exception, number: int | None, label: str) -> None:
    """Say the cell failed (with a traceback for a bug), then store its failed row; if even that fails, raise."""
    sweep.console.print(f"[red]failed[/red] {label}: {error}", highlight=False)
    if not isinstance(error, NonFiniteError) and not out_of_space(error):  # an outcome or the disk, not a bug
        sweep.console.print(traceback.format_exc(), markup=False, highlight=False)
    sweep.store.save_run(failed_record(spec, sweep.name, error, number))  # StorageError stops the process
