"""`bench worker`: join a grid or a study from any machine and take cells until none are left."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from bench.errors import BenchError
from bench.names import KIND_ATTR
from bench.run.workbench import RunContext, Workbench
from bench.spec import ExperimentSpec
from bench.store import Store
from bench.sweep.cells import CellCounts, work_grid
from bench.sweep.grid import preflight
from bench.sweep.queue import WorkerOptions, load_bench_study, open_storage, require_study


@dataclass(frozen=True)
class WorkerSummary:
    """What this worker did."""

    study: str
    kind: str
    counts: CellCounts


def open_specs(study) -> list[ExperimentSpec]:  # noqa: ANN001
    """The specs of the study's waiting and running cells (from their user attrs)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return [ExperimentSpec.from_dict(t.user_attrs["spec"]) for t in trials if "spec" in t.user_attrs]


def run_worker(study_name: str, db_url: str, context: RunContext, options: WorkerOptions,
               console: Console | None = None, weights: dict[str, str] | None = None,
               max_cells: int | None = None) -> WorkerSummary:
    """Everything the worker needs (specs, weights paths, search space) comes from the database."""
    console = console or Console(stderr=True)
    require_study(study_name, db_url)  # a mistyped name must not create Optuna's schema in a new database
    storage = open_storage(db_url, options)
    study = load_bench_study(study_name, storage)
    kind = study.user_attrs.get(KIND_ATTR)
    store = Store(db_url)
    if kind == "grid":
        bench = Workbench(context, {**study.user_attrs.get("weights", {}), **(weights or {})})
        preflight(bench, open_specs(study))
        return WorkerSummary(study_name, kind, work_grid(study, storage, bench, store, options, console, max_cells))
    if kind == "study":
        from bench.sweep.search import work_study

        counts = work_study(study, storage, store, context, options, console, weights or {}, max_cells)
        return WorkerSummary(study_name, kind, counts)
    raise BenchError(f"--study {study_name!r} was not made by `bench run` or `bench study`; nothing to work on")
