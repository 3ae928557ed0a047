"""`bench launch FILE` (a grid or study's workers through submitit, on SLURM or on this machine) and
`bench status NAME`."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import (
    DEFAULT_DB,
    AllowDownloadOption,
    ArtifactsOption,
    BundleOption,
    CacheDirOption,
    DataRootOption,
    DbOption,
    DeviceOption,
    GraceOption,
    HeartbeatOption,
    KeepOption,
    RunDirOption,
    SkipBadOption,
    ThreadsOption,
    WeightsOption,
    WorkersPerDeviceOption,
    err,
    local_workers,
    out,
    print_rows,
    user_errors,
    worker_options,
    worker_threads,
)
from bench.core.errors import BenchError


def launch(
    file: Annotated[Path, typer.Argument(help="grid or study YAML")],
    executor: Annotated[str, typer.Option(help="slurm (a job array through submitit) or local (processes here)")]
    = "slurm",
    workers: Annotated[int | None, typer.Option(help="how many workers (array tasks, or local processes) [default: "
                                                   "1; local on CUDA: GPUs x --workers-per-device]")] = None,
    workers_per_device: WorkersPerDeviceOption = 1,
    threads: ThreadsOption = None,
    db: DbOption = DEFAULT_DB,
    partition: Annotated[str | None, typer.Option(help="SLURM partition")] = None,
    gpus_per_worker: Annotated[int, typer.Option(help="GPUs per array task")] = 0,
    cpus_per_worker: Annotated[int | None, typer.Option(help="CPUs per array task")] = None,
    mem: Annotated[str | None, typer.Option(help="memory per array task, e.g. 16G")] = None,
    time: Annotated[str, typer.Option("--time", help="time limit per task: minutes or [D-]HH:MM:SS")] = "1-00:00:00",
    account: Annotated[str | None, typer.Option(help="SLURM account")] = None,
    qos: Annotated[str | None, typer.Option(help="SLURM QOS")] = None,
    constraint: Annotated[str | None, typer.Option(help="SLURM node constraint")] = None,
    slurm_arg: Annotated[list[str] | None, typer.Option(help="extra #SBATCH KEY=VALUE (repeatable)")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="job logs [default: ./bench-logs/NAME]")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="a study's trial budget [default: the file's]")]
    = None,
    wait: Annotated[bool, typer.Option(help="wait for local workers and print their summaries")] = True,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    bundle: BundleOption = "auto",
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
) -> None:
    """Enqueue a grid (or start a study) and submit its workers: a SLURM job array, or local processes."""
    with user_errors():
        from bench.run.context import RunContext
        from bench.store.session import check_connection
        from bench.sweep.launch import SlurmResources, check_executor, minutes, slurm_args, submit

        check_executor(executor, 1 if workers is None else workers)
        checks.device(device)
        slots = launch_slots(executor, workers, workers_per_device, device)
        threads_used = threads if executor == "slurm" else worker_threads(threads, len(slots))
        resources = SlurmResources(partition, gpus_per_worker, cpus_per_worker, mem, minutes(time), account, qos,
                                   constraint, slurm_args(slurm_arg))
        checks.paths("launch", file=file, cache_dir=cache_dir, data_root=data_root, run_dir=run_dir,
                     artifacts=artifacts, log_dir=log_dir)
        options = worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep, bundle=bundle)
        check_connection(db)
        context = RunContext(cache_dir, data_root, device, allow_download=allow_download, skip_bad=skip_bad,
                             threads=threads_used)  # None on SLURM: each task resolves its own allocation's
        job = _prepare(file, db, context, options, checks.weights(weights), trials)
        logs = log_dir or Path("bench-logs") / job.study
        launched = submit(job, executor, slots, logs.resolve(), resources)
        each = f", {threads_used} threads each" if threads_used else ""
        out.print(f"{job.study}: {len(slots)} worker(s) on {executor}{each}: job(s) {', '.join(launched.job_ids)}",
                  highlight=False, soft_wrap=True)
        out.print(f"logs: {logs.resolve()}/<job id>_0_log.err (and .out)", highlight=False, soft_wrap=True)
        out.print(f"progress: bench status {job.study} --db {db}\n"
                  f"          bench runs --db {db} --where \"study = '{job.study}'\"\n"
                  f"          optuna-dashboard {db}", highlight=False, soft_wrap=True)
        if executor == "local" and wait:
            for job_id, running in zip(launched.job_ids, launched.jobs, strict=True):
                out.print(f"job {job_id}: {running.result()}", highlight=False, soft_wrap=True)
        launched.jobs.clear()  # submitit's job objects go now, not during interpreter shutdown (a noisy __del__)
        gc.collect()


def launch_slots(executor: str, workers: int | None, per_device: int, device: str) -> list:
    """Each worker's device: local workers K per GPU (bench/sweep/devices.py); SLURM array tasks one worker each."""
    if executor == "local":
        return local_workers(workers, per_device, device)
    if per_device != 1:
        raise BenchError(f"--workers-per-device {per_device}: packs local workers on this machine's GPUs; a SLURM "
                         "array task is one worker (use --executor local on a GPU node, or bench run --jobs)")
    from bench.sweep.devices import WorkerDevice

    return [WorkerDevice(device)] * (workers or 1)


def _prepare(file: Path, db: str, context, options, weights: dict[str, str], trials: int | None):  # noqa: ANN001, ANN202
    """A grid is enqueued here (the workers need no YAML); a study is created by its first worker."""
    from bench.config.base import read_yaml
    from bench.config.stages import is_stage_file
    from bench.sweep.launch import WorkerJob

    data = read_yaml(file, "launch file")
    if is_stage_file(data):  # its later stages' run: teachers exist only once the earlier stages have run
        raise BenchError(f"{file}: a two-stage file (stages:) runs its stages in order with bench run FILE; bench "
                         "launch enqueues one grid before any worker starts, so launch each stage's grid instead")
    if isinstance(data, dict) and ("search" in data or "sampler" in data or "trials" in data):
        from bench.config.study import load_study_file

        model = load_study_file(file, db)  # run: teachers resolve against --db, as in bench study
        if trials is not None and trials < 1:
            raise BenchError(f"--trials {trials}: must be at least 1 (leave it out to use the file's trials)")
        return WorkerJob(model.study_name, db, context, options, weights, search=model, trials=trials)
    if trials is not None:
        raise BenchError(f"--trials: {file} is a grid, not a study; leave --trials out")
    from bench.config.grid import load_grid
    from bench.sweep.grid import run_grid

    loaded = load_grid(file, db)  # run: teachers resolve against --db; their artifacts go to the workers
    loaded.weights.update(weights)
    summary = run_grid(loaded, db, context, err, options, enqueue_only=True)
    err.print(f"grid {summary.study}: {summary.total} cells, {summary.skipped} already done", highlight=False)
    return WorkerJob(summary.study, db, context, options, weights)


def status(
    name: Annotated[str, typer.Argument(help="grid or study name")],
    db: DbOption = DEFAULT_DB,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
) -> None:
    """Each cell of a grid or study: waiting, running (host and job), done or failed."""
    with user_errors():
        from bench.cli.common import one_format
        from bench.store.session import check_connection
        from bench.sweep.status import state_totals, study_status

        one_format(csv, as_json)
        check_connection(db)
        cells = study_status(name, db)
        totals = state_totals(cells)
        if not (csv or as_json):
            out.print(f"{name}: " + ", ".join(f"{count} {state}" for state, count in totals.items()),
                      highlight=False, soft_wrap=True)
        print_rows(["trial", "cell", "state", "host", "job"],
                   [(c.trial, c.label, c.state, c.host, c.job) for c in cells], csv, as_json)
