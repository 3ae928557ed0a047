"""`bench run --jobs N`: N local workers share one grid through the database, as `bench launch --executor local`'s
do: this process enqueues the grid and works as worker 0 (its bars on the terminal), N-1 more run as local jobs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from bench.config.grid import Grid
from bench.core.threads import cpu_share
from bench.run.context import RunContext
from bench.store.readonly import read_only_reason
from bench.sweep.devices import WorkerDevice
from bench.sweep.grid import GridSummary, grid_cells, is_finished, run_grid, stored_done_keys
from bench.sweep.launch import SlurmResources, WorkerJob, WorkerResult, submit
from bench.sweep.queue import WorkerOptions

LOCAL_JOB_MINUTES = 60 * 24 * 365  # submitit kills a local job at its time limit; a grid's workers have none


def run_jobs(grid: Grid, db_url: str, context: RunContext, console: Console, options: WorkerOptions,
             slots: list[WorkerDevice], log_dir: Path) -> GridSummary:
    """Enqueue the grid, start a local worker per slot after the first, work as the first, then add up what every
    worker did. A finished grid, or a read-only database, starts nobody."""
    cells = grid_cells(grid)
    if len(slots) < 2 or read_only_reason(db_url) is not None or is_finished(
            grid, cells, stored_done_keys(db_url), db_url):
        return run_grid(grid, db_url, context, console, options)
    from bench.run.workbench import Workbench

    bench = Workbench(context, grid.weights)  # worker 0's: the preflight's teachers and data stay loaded for it
    enqueued = run_grid(grid, db_url, context, console, options, enqueue_only=True, bench=bench)
    thread_note(console, context.threads, len(slots))
    job = WorkerJob(grid.name, db_url, context, options, grid.weights)
    launched = submit(job, "local", slots[1:], log_dir, SlurmResources(time_min=LOCAL_JOB_MINUTES))
    console.print(f"grid {grid.name}: {len(slots)} local workers ({context.threads} threads each); the other "
                  f"workers' logs: {log_dir}", highlight=False, soft_wrap=True)
    try:
        mine = work_here(grid.name, db_url, bench, options, console)
    except BaseException:  # Ctrl-C or a bug here: the others hand their cells back and stop too
        for running in launched.jobs:
            running.cancel(check=False)
        raise
    results = [mine, *(collect(running, console) for running in launched.jobs)]
    launched.jobs.clear()
    return GridSummary(grid.name, enqueued.total, enqueued.skipped, sum(r.done for r in results),
                       sum(r.failed for r in results))


def work_here(name: str, db_url: str, bench, options: WorkerOptions, console: Console) -> WorkerResult:  # noqa: ANN001
    """Worker 0: claim and run cells in this process, on the workbench the preflight filled."""
    from bench.store.results import Store
    from bench.sweep.context import Sweep
    from bench.sweep.queue import load_bench_study, open_storage
    from bench.sweep.worker import work_grid

    storage = open_storage(db_url, options)
    counts = work_grid(Sweep(load_bench_study(name, storage), storage, bench, Store(db_url), options, console))
    return WorkerResult("this process", counts.done, counts.failed, counts.skipped)


def collect(running, console: Console) -> WorkerResult:  # noqa: ANN001 - a submitit Job
    """A local worker's result; one that died counts nothing (its cell was handed back or retried by the others)."""
    try:
        result = running.result()
    except Exception as error:  # noqa: BLE001 - submitit's FailedJobError carries the worker's traceback
        console.print(f"worker job {running.job_id} ended without its summary ({type(error).__name__}); its log: "
                      f"{running.paths.stderr}", highlight=False, soft_wrap=True)
        return WorkerResult("failed")
    console.print(f"worker job {running.job_id}: {result}", highlight=False, soft_wrap=True)
    return result


def thread_note(console: Console, threads: int | None, workers: int) -> None:
    """Say so when workers x threads exceed the CPUs this process may use (only an explicit --threads can)."""
    cpus = cpu_share().cpus
    if threads is not None and threads * workers > cpus:
        console.print(f"note: {workers} workers x {threads} threads = {threads * workers} threads on {cpus} CPU(s) "
                      "this process may use: they will wait on each other (leave --threads out to divide the CPUs)",
                      highlight=False, soft_wrap=True)
