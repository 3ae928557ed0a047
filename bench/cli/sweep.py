"""`bench run`, `bench worker`, `bench study`: parse the options, then hand the sweep to bench/sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import (
    DEFAULT_DB,
    DEFAULT_GRID,
    AllowDownloadOption,
    ArtifactsOption,
    BundleOption,
    CacheDirOption,
    DataRootOption,
    DbOption,
    DeviceOption,
    GraceOption,
    HeartbeatOption,
    JobsOption,
    KeepOption,
    RunDirOption,
    SkipBadOption,
    StorageOption,
    ThreadsOption,
    WeightsOption,
    WorkersPerDeviceOption,
    err,
    local_workers,
    out,
    user_errors,
    worker_options,
    worker_threads,
)
from bench.core.errors import BenchError


def stage_file(path: Path) -> bool:
    """Whether the file declares `stages:` (bench/config/stages.py)."""
    from bench.config.base import read_yaml
    from bench.config.stages import is_stage_file

    return is_stage_file(read_yaml(path, "grid"))


def run_stages(path: Path, db: str, context: object, options: object, enqueue_only: bool,
               weights: list[str] | None) -> None:
    """`bench run` of a stage file: each stage as a grid, in order; one summary line per stage."""
    from bench.sweep.stages import run_stage_file

    for summary in run_stage_file(path, db, context, err, options, enqueue_only,
                                  lambda teachers: {name: path for name, path in checks.weights(weights).items()
                                                    if name in teachers}):
        out.print(f"stage grid {summary.study}: {summary.total} cells, {summary.skipped} already done, "
                  f"{summary.done} run now, {summary.failed} failed; results in {db}", highlight=False,
                  soft_wrap=True)


def run(
    grid_file: Annotated[Path | None, typer.Argument(help=f"grid YAML [default: {DEFAULT_GRID}]")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="grid YAML (the same as the FILE argument)")] = None,
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    threads: ThreadsOption = None,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    bundle: BundleOption = "auto",
    enqueue_only: Annotated[bool, typer.Option(help="only enqueue the cells; `bench worker`s run them")] = False,
    jobs: JobsOption = None,
    workers_per_device: WorkersPerDeviceOption = 1,
    log_dir: Annotated[Path | None, typer.Option(help="--jobs: the other workers' logs [default: "
                                                      "./bench-logs/NAME]")] = None,
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
) -> None:
    """Run every cell of a grid not already in the database (re-running is a no-op)."""
    with user_errors():
        from bench.config.grid import load_grid
        from bench.run.context import RunContext
        from bench.store.session import check_connection
        from bench.sweep.grid import run_grid

        if grid is not None and grid_file is not None and grid != grid_file:
            raise BenchError(f"two grid files given ({grid_file} and --grid {grid}); give one: bench run FILE")
        checks.paths("run", grid_file=grid_file, grid=grid, cache_dir=cache_dir, data_root=data_root,
                     run_dir=run_dir, artifacts=artifacts, log_dir=log_dir)
        checks.device(device)
        options = worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep, bundle=bundle)
        slots = None
        if jobs is not None or workers_per_device != 1:
            if enqueue_only:
                raise BenchError("--enqueue-only starts no worker; leave --jobs and --workers-per-device out")
            slots = local_workers(jobs, workers_per_device, device)
        threads_used = worker_threads(threads, len(slots) if slots else 1)
        check_connection(db)
        if stage_file(grid or grid_file or DEFAULT_GRID):  # two-stage: bench/sweep/stages.py runs each stage
            context = RunContext(cache_dir, data_root, device, allow_download=allow_download, skip_bad=skip_bad,
                                 threads=threads_used)
            run_stages(grid or grid_file or DEFAULT_GRID, db, context, options, enqueue_only, weights)
            return
        loaded = load_grid(grid or grid_file or DEFAULT_GRID, db)
        loaded.weights.update(checks.weights(weights, sorted({spec.teacher for spec in loaded.specs})))
        context = RunContext(cache_dir, data_root, device, allow_download=allow_download, skip_bad=skip_bad,
                             threads=threads_used)
        if slots is not None and len(slots) > 1:
            from bench.sweep.jobs import run_jobs

            logs = (log_dir or Path("bench-logs") / loaded.name).resolve()
            summary = run_jobs(loaded, db, context, err, options, slots, logs)
        else:
            summary = run_grid(loaded, db, context, err, options, enqueue_only)
        out.print(
            f"grid {summary.study}: {summary.total} cells, {summary.skipped} already done, "
            f"{summary.done} run now, {summary.failed} failed; results in {db}",
            highlight=False,
            soft_wrap=True,
        )
        if summary.failed:
            raise typer.Exit(1)



def worker(
    study: Annotated[str, typer.Option("--study", help="name of the grid or study to join")],
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    threads: ThreadsOption = None,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    bundle: BundleOption = "auto",
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
    max_cells: Annotated[int | None, typer.Option(help="stop after this many cells/trials")] = None,
    storage: StorageOption = None,
) -> None:
    """Join a grid or study in the database from any machine; take cells until none are left."""
    with user_errors():
        from bench.run.context import RunContext
        from bench.store.session import check_connection
        from bench.sweep.worker import run_worker

        checks.study_name("--study", study)
        checks.positive("--max-cells", max_cells)
        checks.paths("worker", cache_dir=cache_dir, data_root=data_root, run_dir=run_dir, artifacts=artifacts)
        checks.device(device)
        worker_weights = checks.weights(weights)
        threads_used = worker_threads(threads)
        check_connection(db)
        options = worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep, storage, bundle)
        context = RunContext(cache_dir, data_root, device, allow_download, skip_bad, threads=threads_used)
        summary = run_worker(study, db, context, options, err, worker_weights, max_cells)
        counts = summary.counts
        out.print(f"worker on {summary.kind} {study}: {counts.done} done, {counts.failed} failed, "
                  f"{counts.skipped} already stored", highlight=False, soft_wrap=True)
        if counts.failed:
            raise typer.Exit(1)



def study_command(
    study_file: Annotated[Path, typer.Argument(help="study YAML (search space, sampler, pruner, objectives)")],
    trials: Annotated[int | None, typer.Option("--trials", help="trials in the study [default: the file's]")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="stop starting trials after S seconds")] = None,
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    threads: ThreadsOption = None,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
    storage: StorageOption = None,
) -> None:
    """Search hyperparameters with Optuna on val, then re-run the best trial(s) on test over several seeds."""
    with user_errors():
        from bench.config.study import load_study_file
        from bench.run.context import RunContext
        from bench.store.session import check_connection
        from bench.sweep.search import run_study

        if trials is not None and trials < 1:
            raise BenchError(f"--trials {trials}: must be at least 1 (leave it out to use the file's trials)")
        if timeout is not None and not timeout > 0:
            raise BenchError(f"--timeout {timeout:g}: must be more than 0 seconds")
        checks.paths("study", study_file=study_file, cache_dir=cache_dir, data_root=data_root, run_dir=run_dir,
                     artifacts=artifacts)
        checks.device(device)
        threads_used = worker_threads(threads)
        check_connection(db)
        config = load_study_file(study_file, db)
        checks.trials(trials, config.cell_limit)
        study_weights = checks.weights(weights, config.teacher)
        options = worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep, storage)
        context = RunContext(cache_dir, data_root, device, allow_download, skip_bad, threads=threads_used)
        summary = run_study(config, db, context, options, err,
                            trials=trials, timeout=timeout, weights=study_weights)
        out.print(summary.describe(), highlight=False, soft_wrap=True)

