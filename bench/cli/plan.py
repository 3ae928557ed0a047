"""`bench plan FILE`: the dry run of bench/plan, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import (
    DEFAULT_DB,
    BundleOption,
    DataRootOption,
    DbOption,
    JobsOption,
    ThreadsOption,
    WeightsOption,
    WorkersPerDeviceOption,
    check_bundle,
    out,
    user_errors,
    worker_threads,
)


def plan_command(
    plan_file: Annotated[Path, typer.Argument(metavar="FILE", help="grid or study YAML")],
    gpu: Annotated[str | None, typer.Option(help="estimate for this GPU from the cited table (h200, h100, a100, "
                                                 "rtx4090) instead of timing batches here")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="time every teacher and student here again instead of "
                                                          "reusing the rates this machine timed before")] = False,
    db: DbOption = DEFAULT_DB,
    data_root: DataRootOption = None,
    weights: WeightsOption = None,
    jobs: JobsOption = None,
    workers_per_device: WorkersPerDeviceOption = 1,
    bundle: BundleOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Dry run: the cells, which are done, missing weights and data (and the fix), estimated time per phase."""
    with user_errors():
        from bench.plan.dry_run import make_plan
        from bench.store.session import check_connection

        checks.paths("plan", plan_file=plan_file, data_root=data_root)
        check_bundle(bundle)
        check_connection(db)
        from bench.plan import throughput

        throughput.TIMINGS = throughput.Timings(refresh=measure)
        workers, devices = plan_workers(jobs, workers_per_device, gpu)
        threads_used = worker_threads(threads, workers)
        if gpu is None:  # timed here: at the threads each of bench run's workers would take now
            from bench.run.threads import apply_threads

            apply_threads(threads_used)
        plan = make_plan(plan_file, db, gpu, checks.weights(weights), data_root, workers, devices, bundle)
        if plan.runnable:
            build_undecided(plan.runs, plan.done, {**plan.weights, **checks.weights(weights)}, data_root)
        for line in [*plan.lines, *timing_lines(throughput.TIMINGS)]:
            out.print(line, highlight=False, markup=False, soft_wrap=True)
        if not plan.runnable:
            out.print(f"not runnable yet: missing {', '.join(plan.missing)}", highlight=False, markup=False,
                      soft_wrap=True)
            raise typer.Exit(2)
        out.print("runnable: every weight and dataset is present", highlight=False)



def plan_workers(jobs: int | None, per_device: int, gpu: str | None) -> tuple[int, int]:
    """(workers, devices) as `bench run --jobs --workers-per-device` would start them: on one --gpu NAME, or here."""
    from bench.sweep.devices import WorkerDevice

    if jobs is None and per_device == 1:
        return 1, 1
    if gpu is not None:
        from bench.sweep.devices import worker_devices

        slots: list[WorkerDevice] = worker_devices(jobs, per_device, "cuda", None, 1)
    else:
        from bench.cli.common import local_workers

        slots = local_workers(jobs, per_device, "auto")
    return len(slots), max(1, len({slot.visible for slot in slots}))



def build_undecided(runs: list, done: set[str], weights: dict[str, str], data_root: Path | None) -> None:
    """Cells the file's declarations could not check are built on their loaded teacher and data, as `bench run`'s
    preflight does, so `bench plan` never calls runnable a grid that `bench run` refuses."""
    from bench.config.shapes import undecided

    cells = undecided(spec for spec in runs if spec.key not in done)
    if not cells:
        return
    from bench.run.context import RunContext
    from bench.run.workbench import Workbench
    from bench.sweep.grid import check_buildable

    check_buildable(Workbench(RunContext(data_root=data_root, device="cpu"), weights), cells)


def timing_lines(timings) -> list[str]:  # noqa: ANN001 - bench.plan.throughput.Timings
    """Which of the rates 'measured here' were timed now and which came from this machine's timing cache."""
    if not timings.timed and not timings.cached:
        return []
    when = ", ".join(sorted(timings.cached_at))
    return [f"timings: {timings.timed} timed now, {timings.cached} reused from this machine's timing cache"
            + (f" (timed {when}; --measure times them again)" if timings.cached else "")]
