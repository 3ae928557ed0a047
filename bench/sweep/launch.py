"""`bench launch`: enqueue a grid (or name a study) and submit its workers through submitit, as a SLURM job array
or as local processes (K per GPU, bench/sweep/devices.py); a preempted or timed-out job hands its cell back and
requeues."""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.config.study import StudyModel
from bench.core.errors import BenchError
from bench.run.context import RunContext
from bench.sweep.devices import WorkerDevice
from bench.sweep.queue import WorkerOptions
from bench.sweep.signals import Preempted

EXECUTORS = ("local", "slurm")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")  # SLURM's D-HH:MM:SS forms, or minutes


@dataclass(frozen=True)
class SlurmResources:
    """What each array task asks SLURM for (`--partition`, `--gpus-per-worker`, ..., `--slurm-arg KEY=VALUE`)."""

    partition: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None
    mem: str | None = None  # SLURM's --mem, e.g. 16G
    time_min: int = 60 * 24  # --time, in minutes
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """submitit.SlurmExecutor parameters; submitit's own signal (SIGUSR2, 120 s before the end) requeues."""
        found: dict[str, Any] = {"time": self.time_min, "signal_delay_s": 120}
        for name, value in (("partition", self.partition), ("cpus_per_task", self.cpus_per_worker),
                            ("mem", self.mem), ("account", self.account), ("qos", self.qos),
                            ("constraint", self.constraint)):
            if value is not None:
                found[name] = value
        if self.gpus_per_worker:
            found["gpus_per_node"] = self.gpus_per_worker
        if self.extra:
            found["additional_parameters"] = dict(self.extra)
        return found


def minutes(value: str) -> int:
    """`--time`: minutes, HH:MM:SS, MM:SS or D-HH[:MM[:SS]] (SLURM's forms) -> whole minutes (at least 1)."""
    match = _TIME.match(value.strip())
    if match is None:
        raise BenchError(f"--time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(part) if part else 0 for part in match.groups())
    if match.group(1) is not None:  # D-HH[:MM[:SS]]
        total_s = days * 86400 + first * 3600 + second * 60 + third
    elif match.group(4) is not None:  # HH:MM:SS
        total_s = first * 3600 + second * 60 + third
    elif match.group(3) is not None:  # MM:SS
        total_s = first * 60 + second
    else:
        total_s = first * 60
    if total_s <= 0:
        raise BenchError(f"--time {value!r}: must be more than 0")
    return max(1, -(-total_s // 60))


def slurm_args(items: list[str] | None) -> dict[str, str]:
    """`--slurm-arg KEY=VALUE` (repeatable) -> extra #SBATCH lines (`--KEY=VALUE`)."""
    found = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            raise BenchError(f"--slurm-arg {item!r}: expected KEY=VALUE, e.g. --slurm-arg exclude=node7")
        found[key] = value
    return found


@dataclass(frozen=True)
class WorkerResult:
    """What a worker job returns to the process that waits on it: its summary line and, for a grid, its counts."""

    text: str
    done: int = 0
    failed: int = 0
    skipped: int = 0  # cells another worker had stored already

    def __str__(self) -> str:
        return self.text


class WorkerJob:
    """One worker as submitit runs it: `bench worker` (or, for a search, `bench study`) in the job's process.

    A stop signal hands the running cell back (bench/sweep/signals.py); after SIGUSR2 (submitit's timeout and
    preemption signal) submitit's handler then requeues the job through `checkpoint`, so the task comes back.
    `visible` pins a local worker to its GPU (CUDA_VISIBLE_DEVICES, set before anything touches CUDA); threads
    left unset (a SLURM task) are resolved in the task, from the CPUs its allocation gives it.
    """

    def __init__(self, study: str, db_url: str, context: RunContext, options: WorkerOptions,
                 weights: dict[str, str], search: StudyModel | None = None, trials: int | None = None,
                 visible: str | None = None) -> None:
        self.study, self.db_url, self.context, self.options = study, db_url, context, options
        self.weights, self.search, self.trials, self.visible = weights, search, trials, visible

    def __call__(self) -> WorkerResult:
        if self.visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.visible
        try:
            result = self._work()
        except Preempted as stop:
            if stop.signum == signal.SIGUSR2 and callable(stop.previous):
                stop.previous(stop.signum, None)  # submitit: checkpoint(), `scontrol requeue`, exit
            result = WorkerResult(f"stopped by {signal.Signals(stop.signum).name}; its cell waits for the next "
                                  "worker")
        _job_console().print(result.text, highlight=False, soft_wrap=True)  # in the job's log, beside submitit's
        return result

    def _work(self) -> WorkerResult:
        context = self.context
        if context.threads is None:
            from bench.core.threads import resolve_threads

            context = replace(context, threads=resolve_threads(None))
        if self.search is not None:
            from bench.sweep.search import run_study

            return WorkerResult(run_study(self.search, self.db_url, context, self.options, _job_console(),
                                          trials=self.trials, weights=self.weights).describe())
        from bench.sweep.worker import run_worker

        summary = run_worker(self.study, self.db_url, context, self.options, _job_console(), self.weights)
        counts = summary.counts
        return WorkerResult(f"worker on {summary.kind} {self.study}: {counts.done} done, {counts.failed} failed, "
                            f"{counts.skipped} already stored ({context.threads} threads)", counts.done, counts.failed,
                            counts.skipped)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: the same worker again (the cell's own checkpoint lives in --run-dir)."""
        import submitit

        return submitit.helpers.DelayedSubmission(WorkerJob(self.study, self.db_url, self.context, self.options,
                                                            self.weights, self.search, self.trials, self.visible))


def _job_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, force_terminal=False, width=160)  # a log file, not a terminal


def check_executor(executor: str, workers: int) -> None:
    """The executor and worker count, said before anything is enqueued (SLURM needs `sbatch` on PATH)."""
    import shutil

    if executor not in EXECUTORS:
        raise BenchError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise BenchError(f"--workers {workers}: must be at least 1")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise BenchError("--executor slurm: `sbatch` is not on PATH (run on a SLURM login node, or --executor local)")


@dataclass(frozen=True)
class Launched:
    """What was submitted: the job ids and their log files."""

    executor: str
    job_ids: list[str]
    logs: list[Path]
    jobs: list[Any]  # submitit Job objects (local ones can be waited on)


def submit(job: WorkerJob, executor: str, workers: int | list[WorkerDevice], log_dir: Path,
           resources: SlurmResources) -> Launched:
    """Submit `workers` copies of the job: one SLURM array, or local processes, one per WorkerDevice (each pinned to
    its GPU, bench/sweep/devices.py; a count means CPU workers on the job's own device)."""
    import submitit

    slots = [WorkerDevice(job.context.device)] * workers if isinstance(workers, int) else workers
    check_executor(executor, len(slots))
    log_dir.mkdir(parents=True, exist_ok=True)
    if executor == "local":
        runner = submitit.LocalExecutor(folder=log_dir)
        runner.update_parameters(timeout_min=resources.time_min, gpus_per_node=0)  # each job sets its own GPU
        jobs = [runner.submit(local_job(job, slot)) for slot in slots]
    else:
        runner = submitit.SlurmExecutor(folder=log_dir)
        runner.update_parameters(job_name=f"bench-{job.study}", array_parallelism=len(slots),
                                 **resources.parameters())
        with runner.batch():
            jobs = [runner.submit(job) for _ in slots]
    return Launched(executor, [str(j.job_id) for j in jobs], [Path(j.paths.stderr) for j in jobs], jobs)


def local_job(job: WorkerJob, slot: WorkerDevice) -> WorkerJob:
    """The job as one local worker runs it: on its slot's device, seeing only its slot's GPU."""
    return WorkerJob(job.study, job.db_url, replace(job.context, device=slot.device), job.options, job.weights,
                     job.search, job.trials, slot.visible)
