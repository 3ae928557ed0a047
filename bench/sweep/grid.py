"""Grid enqueue: a grid is a study whose trials are its cells; enqueue them and work on them with other workers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from bench.config.grid import Grid
from bench.core.errors import BenchError
from bench.core.names import GRID_KIND, KIND_ATTR, REFERENCE_METHODS, SEARCH_KIND, SOURCE_ATTR, WEIGHTS_ATTR
from bench.core.spec import ExperimentSpec, probe_spec
from bench.run.context import RunContext
from bench.store.lock import ENQUEUE_LOCK, database_lock
from bench.store.readonly import read_only_reason
from bench.sweep.queue import WorkerOptions, enqueue_cells, open_storage, open_study

if TYPE_CHECKING:  # torch, Optuna and the migrations load only when a cell is left to run (run_grid)
    from bench.run.workbench import Workbench


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


def stored_done_keys(db_url: str) -> set[str]:
    """Spec keys already done, read without creating or migrating anything (empty for a new database)."""
    from bench.store.sql import read_only_query

    try:
        _, rows = read_only_query(db_url, "SELECT spec_key FROM runs WHERE status = 'done'", user_sql=False)
    except BenchError:  # no database or no runs table yet: nothing is done
        return set()
    return {row[0] for row in rows}


def grid_attrs(grid: Grid) -> dict[str, object]:
    """The user attributes a grid's study carries (`bench worker` joins with them; the report cites the source)."""
    return {KIND_ATTR: GRID_KIND, WEIGHTS_ATTR: grid.weights,
            SOURCE_ATTR: str(grid.path.resolve()) if grid.path else ""}


def is_finished(grid: Grid, cells: list[ExperimentSpec], done_before: set[str], db_url: str) -> bool:
    """Whether re-running the grid would change nothing: every cell done and its study stored with the same
    attributes; read-only and torch-free, so a finished grid's re-run costs about its database query."""
    if any(spec.key not in done_before for spec in cells):
        return False
    from bench.store.sql import read_only_query

    name = grid.name.replace("'", "''")
    try:
        _, rows = read_only_query(db_url, "SELECT a.key, a.value_json FROM study_user_attributes a JOIN studies s "
                                          f"ON s.study_id = a.study_id WHERE s.study_name = '{name}'",
                                  user_sql=False)
    except BenchError:  # no Optuna tables: the study was never created here
        return False
    stored = {key: json.loads(value) for key, value in rows}
    return all(key in stored and stored[key] == value for key, value in grid_attrs(grid).items())


def finished_on_read_only(name: str, cells: list[ExperimentSpec], done: set[str], reason: str,
                          console: Console) -> GridSummary:
    """A read-only database: the summary of a finished grid (nothing to write), or a one-line BenchError."""
    left = sum(spec.key not in done for spec in cells)
    if left:
        raise BenchError(f"--db: {reason}, and {left} of the grid's {len(cells)} cells still need to run and be "
                         "written; make it writable or pass another --db")
    console.print(f"grid {name}: every cell is done; the database is read-only ({reason}), nothing to write",
                  highlight=False, soft_wrap=True)
    return GridSummary(name, len(cells), len(cells), 0, 0)


def run_grid(grid: Grid, db_url: str, context: RunContext, console: Console | None = None,
             options: WorkerOptions | None = None, enqueue_only: bool = False,
             bench: Workbench | None = None) -> GridSummary:
    """Enqueue every cell of the grid not already done and work on them with any other workers.

    Re-running a finished grid does nothing; `bench worker --study NAME` on other machines joins in.
    """
    console = console or Console(stderr=True)
    options = options or WorkerOptions()
    cells = grid_cells(grid)
    done_before = stored_done_keys(db_url)  # read-only: a new database is created only after the preflight
    read_only = read_only_reason(db_url)
    if read_only is not None:  # nothing may be written: a finished grid is fine, any other is one line
        return finished_on_read_only(grid.name, cells, done_before, read_only, console)
    if not enqueue_only and is_finished(grid, cells, done_before, db_url):
        return GridSummary(grid.name, len(cells), len(cells), 0, 0)
    from bench.run.workbench import Workbench
    from bench.store.results import Store
    from bench.sweep.cell import preflight
    from bench.sweep.context import Sweep
    from bench.sweep.worker import work_grid

    bench = bench or Workbench(context, grid.weights)
    # Missing weights or data of a cell still to run stop here, before the database is touched; a finished
    # grid loads no teacher at all, so re-running it is quick.
    preflight(bench, [spec for spec in cells if spec.key not in done_before])
    check_buildable(bench, [spec for spec in grid.specs if spec.key not in done_before])
    store = Store(db_url)
    storage = open_storage(db_url, options)
    with database_lock(db_url, ENQUEUE_LOCK):  # processes started together enqueue each cell once
        check_kind(storage, grid.name, GRID_KIND)
        study = open_study(grid.name, storage)
        for key, value in grid_attrs(grid).items():  # `bench worker` joins without the YAML; report provenance
            study.set_user_attr(key, value)
        enqueue_cells(study, cells, store.done_keys)  # all cells, so labels see every setting; done ones skipped
    already = sum(spec.key in done_before for spec in cells)  # done before this process started
    if enqueue_only:
        return GridSummary(grid.name, len(cells), already, 0, 0)
    counts = work_grid(Sweep(study, storage, bench, store, options, console))
    return GridSummary(grid.name, len(cells), already, counts.done, counts.failed)


def check_buildable(bench: Workbench, specs: list[ExperimentSpec]) -> None:
    """Build every distinct cell's student and method on its loaded teacher and data, before the database is
    touched: a shape or name mismatch (heads vs width, a patch size, a layer name) is refused, not run."""
    from bench.data.splits import DataConfig
    from bench.run.parts import build_parts

    seen: set[tuple] = set()
    for spec in specs:
        if spec.method in REFERENCE_METHODS:
            continue
        setting = (spec.teacher, spec.student, spec.method, spec.dataset, spec.hparams, spec.data)
        if setting in seen:
            continue
        seen.add(setting)
        try:
            build_parts(spec.student, spec.method, spec.hparams_dict, bench.teacher(spec.teacher),
                        bench.data(spec.dataset, DataConfig(**spec.data_dict)))
        except BenchError as error:
            raise BenchError(f"{spec.student} + {spec.method} on {spec.teacher}/{spec.dataset}: {error}") from None
        except (ValueError, RuntimeError, AssertionError, KeyError, TypeError) as error:
            detail = " ".join(str(error).split())[:200]
            raise BenchError(f"{spec.student} + {spec.method} on {spec.teacher}/{spec.dataset}: the student or "
                             f"method cannot be built with hparams {spec.hparams_dict}: {detail}") from None


def check_kind(storage, name: str, kind: str) -> None:  # noqa: ANN001 - optuna RDBStorage
    """A grid never writes into a `bench study` search, nor a search into a grid: one kind per study name."""
    try:
        existing = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get(KIND_ATTR)
    except KeyError:  # no such study yet
        return
    if existing is not None and existing != kind:
        words = {GRID_KIND: "grid (bench run)", SEARCH_KIND: "search study (bench study)"}
        raise BenchError(f"{name!r} is already a {words.get(existing, existing)} in this database; a "
                         f"{words.get(kind, kind)} may not write into it: set another name: in the file "
                         "(or rename the file)")
