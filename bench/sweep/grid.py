"""The Optuna-driven grid runner: a grid is a study whose trials are enqueued cells."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.console import Console

from bench.config.grid import Grid
from bench.data import DataConfig
from bench.dblock import ENQUEUE_LOCK, database_lock
from bench.names import KIND_ATTR, SOURCE_ATTR
from bench.run.run_spec import probe_spec
from bench.run.workbench import RunContext, Workbench
from bench.spec import ExperimentSpec, setting_labels
from bench.store import Store
from bench.sweep.cells import work_grid
from bench.sweep.queue import WorkerOptions, open_storage


@dataclass(frozen=True)
class GridSummary:
    """What a grid run did."""

    study: str
    total: int
    skipped: int  # done before this process started
    done: int  # run and stored by this process
    failed: int


def grid_cells(grid: Grid) -> list[ExperimentSpec]:
    """The teacher-probe cell for each (teacher, dataset, data config), then the grid's specs."""
    probes: dict[str, ExperimentSpec] = {}
    for spec in grid.specs:
        probe = probe_spec(spec.teacher, spec.dataset, spec.data_dict)
        probes.setdefault(probe.key, probe)
    return [*probes.values(), *grid.specs]


def open_study(name: str, storage, directions: list[str] | None = None):  # noqa: ANN001, ANN201 - optuna types
    """Create or open the study `name` (a database URL or an RDBStorage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage, directions=directions or ["maximize"],
                               load_if_exists=True)


def enqueue_cells(study, cells: Iterable[ExperimentSpec], done_keys: Callable[[], set[str]]) -> int:  # noqa: ANN001
    """Enqueue every cell not done, not waiting and not running; returns how many are open now.

    Call it under the database's enqueue lock: two processes reading the open trials at once would both
    enqueue a missing cell. The open trials are read before the done keys, so a cell finished in between
    (its row is stored before its trial completes) is seen in one or the other.
    """
    from optuna.trial import TrialState

    open_states = (TrialState.WAITING, TrialState.RUNNING)
    queued = {t.user_attrs.get("spec_key") for t in study.get_trials(deepcopy=False, states=open_states)}
    cells = list(cells)
    labels = setting_labels(cells)  # the progress line names the hparams that tell the grid's cells apart
    done = done_keys()
    for spec in cells:
        if spec.key not in done and spec.key not in queued:
            attrs = {"spec_key": spec.key, "spec": spec.to_dict(), "label": labels[spec.key]}
            study.enqueue_trial({}, user_attrs=attrs)
            queued.add(spec.key)
    return len(queued)


def preflight(bench: Workbench, cells: Iterable[ExperimentSpec]) -> None:
    """Load every teacher and dataset once, so missing weights or data stop before any run."""
    for spec in cells:
        bench.teacher(spec.teacher)
        bench.data(spec.dataset, DataConfig(**spec.data_dict))


def run_grid(grid: Grid, db_url: str, context: RunContext, console: Console | None = None,
             options: WorkerOptions | None = None, enqueue_only: bool = False,
             bench: Workbench | None = None) -> GridSummary:
    """Enqueue every cell of the grid not already done and work on them with any other workers.

    Re-running a finished grid does nothing; `bench worker --study NAME` on other machines joins in.
    """
    console = console or Console(stderr=True)
    options = options or WorkerOptions()
    cells = grid_cells(grid)
    bench = bench or Workbench(context, grid.weights)
    preflight(bench, cells)  # missing weights or data stop here, before the database is touched
    store = Store(db_url)
    done_before = store.done_keys()
    storage = open_storage(db_url, options)
    with database_lock(db_url, ENQUEUE_LOCK):  # processes started together enqueue each cell once
        study = open_study(grid.name, storage)
        study.set_user_attr(KIND_ATTR, "grid")  # lets `bench worker` join without the YAML
        study.set_user_attr("weights", grid.weights)
        study.set_user_attr(SOURCE_ATTR, str(grid.path.resolve()) if grid.path else "")  # for report provenance
        enqueue_cells(study, cells, store.done_keys)  # all cells, so labels see every setting; done ones skipped
    already = sum(spec.key in done_before for spec in cells)  # done before this process started
    if enqueue_only:
        return GridSummary(grid.name, len(cells), already, 0, 0)
    counts = work_grid(study, storage, bench, store, options, console)
    return GridSummary(grid.name, len(cells), already, counts.done, counts.failed)
