"""The Optuna-driven grid runner: a grid is a study whose trials are enqueued cells."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass, replace

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.data import DataConfig
from bench.errors import BenchError
from bench.grid import Grid
from bench.metrics import score_summary
from bench.provenance import utcnow
from bench.spec import ExperimentSpec
from bench.store import Store
from bench.store.records import RunRecord
from bench.trial import probe_spec, run_spec
from bench.workbench import RunContext, Workbench


@dataclass(frozen=True)
class GridSummary:
    """What a grid run did."""

    study: str
    total: int
    skipped: int
    done: int
    failed: int


def grid_cells(grid: Grid) -> list[ExperimentSpec]:
    """The teacher-probe cell for each (teacher, dataset, data config), then the grid's specs."""
    probes: dict[str, ExperimentSpec] = {}
    for spec in grid.specs:
        probe = probe_spec(spec.teacher, spec.dataset, spec.data_dict)
        probes.setdefault(probe.key, probe)
    return [*probes.values(), *grid.specs]


def open_study(name: str, db_url: str):  # noqa: ANN201 - optuna.Study, imported lazily
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(db_url)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                               load_if_exists=True)


def enqueue_cells(study, cells: Iterable[ExperimentSpec], done: set[str]) -> int:  # noqa: ANN001
    """Enqueue every cell not done and not already waiting; returns how many wait now."""
    from optuna.trial import TrialState

    waiting = {t.user_attrs.get("spec_key") for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    for spec in cells:
        if spec.key not in done and spec.key not in waiting:
            study.enqueue_trial({}, user_attrs={"spec_key": spec.key, "spec": spec.to_dict()})
            waiting.add(spec.key)
    return len(waiting)


def preflight(bench: Workbench, cells: Iterable[ExperimentSpec]) -> None:
    """Load every teacher and dataset once, so missing weights or data stop before any run."""
    for spec in cells:
        bench.teacher(spec.teacher)
        bench.data(spec.dataset, DataConfig(**spec.data_dict))


def _failed_record(spec: ExperimentSpec, study: str, error: BaseException, number: int) -> RunRecord:
    return RunRecord(
        spec_key=spec.key, study=study, teacher=spec.teacher, student=spec.student,
        student_kind="", method=spec.method, dataset=spec.dataset, seed=spec.seed,
        epochs=spec.epochs, hparams=spec.hparams_dict, data_config=spec.data_dict,
        status="failed", error=f"{type(error).__name__}: {error}"[:2000], trial_number=number,
        finished_at=utcnow(),
    )


def run_grid(grid: Grid, db_url: str, context: RunContext, console: Console | None = None) -> GridSummary:
    """Run every cell of the grid not already done; re-running a finished grid does nothing."""
    from optuna.trial import TrialState

    console = console or Console(stderr=True)
    cells = grid_cells(grid)
    bench = Workbench(context, grid.weights)
    preflight(bench, cells)  # missing weights or data stop here, before the database is touched
    store = Store(db_url)
    done_before = store.done_keys()
    todo = [spec for spec in cells if spec.key not in done_before]
    study = open_study(grid.name, db_url)
    enqueue_cells(study, todo, done_before)
    done = failed = 0
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=not console.is_terminal)
    with progress:
        grid_task = progress.add_task(f"grid {grid.name}", total=len(todo))
        for _ in range(len(todo)):
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                break
            trial = study.ask()
            spec = ExperimentSpec.from_dict(trial.user_attrs["spec"])
            run_task = progress.add_task(f"  {spec.label()}", total=max(spec.epochs, 1))
            try:
                record = run_spec(spec, bench, grid.name, trial.number,
                                  on_epoch=lambda _record, task=run_task: progress.advance(task))
            except BenchError:
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as error:  # noqa: BLE001 - a bug in one cell must not stop the grid
                console.print(f"[red]failed[/red] {spec.label()}: {error}")
                console.print(traceback.format_exc(), markup=False, highlight=False)
                store.save_run(_failed_record(spec, grid.name, error, trial.number))
                study.tell(trial, state=TrialState.FAIL)
                failed += 1
            else:
                store.save_run(replace(record, study=grid.name))
                study.tell(trial, record.val_acc)
                done += 1
                console.print(
                    f"[{done + failed}/{len(todo)}] {spec.label()}: {score_summary(record)} "
                    f"({record.size_mb:.3f} MB)",
                    highlight=False, soft_wrap=True,
                )
            progress.remove_task(run_task)
            progress.advance(grid_task)
    return GridSummary(grid.name, len(cells), len(cells) - len(todo), done, failed)
