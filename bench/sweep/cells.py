"""Take grid cells from a shared Optuna study until none are left: the loop of `bench run` and `bench worker`."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.checkpoint import Checkpointer
from bench.errors import BenchError
from bench.metrics import score_summary
from bench.provenance import utcnow
from bench.run.run_spec import run_spec
from bench.run.train import NonFiniteError, check_finite
from bench.run.workbench import Workbench
from bench.spec import ExperimentSpec
from bench.store import Store
from bench.store.records import RunRecord
from bench.sweep.queue import WorkerOptions, claim_waiting, fail_stale_trials, heartbeat


@dataclass
class CellCounts:
    """What one process did with the cells it took."""

    done: int = 0
    failed: int = 0
    skipped: int = 0  # another worker had stored the spec already


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


def cell_progress(console: Console) -> Progress:
    """A bar for the grid and one per running cell; quiet when the console is not a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not console.is_terminal)


def run_cell(study, storage, trial, bench: Workbench, store: Store, options: WorkerOptions,  # noqa: ANN001
             console: Console, progress: Progress) -> str:
    """Run one claimed grid trial (resuming its checkpoint), store its row once, tell Optuna; returns the outcome.

    A run is done only if all its numbers are finite and its row was stored; anything else is a failed row.
    """
    from optuna.trial import TrialState

    spec = ExperimentSpec.from_dict(trial.user_attrs["spec"])
    stored = store.run(spec.key)
    if stored is not None and stored.status == "done":  # a retried trial whose first worker finished the row
        study.tell(trial, stored.val_acc)
        return "skipped"
    checkpoint = Checkpointer(options.run_dir, spec.key, spec.epochs)
    label = trial.user_attrs.get("label") or spec.label()  # names the hparams that differ within the grid
    epochs_bar = progress.add_task(f"  {label}", total=max(spec.epochs, 1))
    try:
        with heartbeat(storage, trial._trial_id):
            record = run_spec(spec, bench, study.study_name, trial.number, checkpoint=checkpoint,
                              on_epoch=lambda _epoch: progress.advance(epochs_bar))
        record = check_finite(replace(record, study=study.study_name))
        written = store.save_run(record)
    except BenchError:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as error:  # noqa: BLE001 - a bug, a NaN or a storage error in one cell must not stop the grid
        fail_cell(study, trial, spec, store, error, console, label)
        return "failed"
    finally:
        progress.remove_task(epochs_bar)
    checkpoint.clear()
    study.tell(trial, record.val_acc)
    resumed = f", resumed after epoch {record.resumed_from_epoch}" if record.resumed_from_epoch else ""
    console.print(f"{label}: {score_summary(record)} ({record.size_mb:.3f} MB{resumed})",
                  highlight=False, soft_wrap=True)
    return "done" if written else "skipped"


def fail_cell(study, trial, spec: ExperimentSpec, store: Store, error: Exception,  # noqa: ANN001
              console: Console, label: str | None = None) -> None:
    """Tell Optuna FAIL, then store a failed row with the reason; if even that cannot be stored, raise."""
    from optuna.trial import TrialState

    console.print(f"[red]failed[/red] {label or spec.label()}: {error}", highlight=False)
    if not isinstance(error, NonFiniteError):  # a diverged run is an outcome, not a bug: no traceback
        console.print(traceback.format_exc(), markup=False, highlight=False)
    study.tell(trial, state=TrialState.FAIL)
    store.save_run(failed_record(spec, study.study_name, error, trial.number))  # StorageError stops the process


def work_grid(study, storage, bench: Workbench, store: Store, options: WorkerOptions,  # noqa: ANN001
              console: Console, max_cells: int | None = None) -> CellCounts:
    """Claim and run cells until no trial waits and none runs elsewhere (a dead worker's cell comes back)."""
    from optuna.trial import TrialState

    counts = CellCounts()
    fail_stale_trials(study, storage)  # a dead worker's cell counts as waiting from the start
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    with cell_progress(console) as progress:
        grid_bar = progress.add_task(f"grid {study.study_name}", total=waiting)
        _claim_and_run(study, storage, bench, store, options, console, max_cells, counts, progress, grid_bar)
    return counts


def _claim_and_run(study, storage, bench: Workbench, store: Store, options: WorkerOptions,  # noqa: ANN001
                   console: Console, max_cells: int | None, counts: CellCounts, progress: Progress,
                   grid_bar: int) -> None:
    """The worker loop: claim a waiting cell, run it, repeat; wait while others still run theirs."""
    from optuna.trial import TrialState

    told = False
    while max_cells is None or counts.done + counts.failed + counts.skipped < max_cells:
        fail_stale_trials(study, storage)
        trial = claim_waiting(study, storage)
        if trial is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            if not running:
                break
            if not told:
                console.print(f"waiting for {len(running)} cell(s) running elsewhere; a dead worker's cell is "
                              f"retried here after {options.grace_period} s without a heartbeat (at once if it "
                              "ran on this machine and its process is gone)", highlight=False)
                told = True
            time.sleep(options.poll_seconds)  # others are running cells; theirs come back if they die
            continue
        outcome = run_cell(study, storage, trial, bench, store, options, console, progress)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        progress.advance(grid_bar)
