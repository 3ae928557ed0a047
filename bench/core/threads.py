"""How many compute threads a worker should use: `--threads N`, `$BENCH_THREADS`, or the CPUs this process may use.

torch's default intra-op pool is one thread per core the machine has, whatever share of it this process owns: on a
SLURM node where a job owns 8 of 64 cores, or a container with a 2-CPU quota, or a busy 2-core box, its threads
outnumber the CPUs they run on, spin in OpenMP barriers and cost several times the CPU of one thread for the same
result. The default here counts the CPUs the process may run on (`os.sched_getaffinity`, `$SLURM_CPUS_PER_TASK`,
the cgroup's `cpu.max` / `cpu.cfs_quota_us` quota), takes away the load other processes put on them when that load
is on those CPUs (no affinity or quota restriction: the load average is the machine's), divides what is left among
the local workers and never exceeds it. Torch-free: bench/run/threads.py applies the count.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError

THREADS_ENV = "BENCH_THREADS"
# The variables BLAS and OpenMP libraries read when they load (numpy's OpenBLAS, MKL, torch's OpenMP).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
CGROUP_FILES = (Path("/sys/fs/cgroup/cpu.max"), Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))


@dataclass(frozen=True)
class CpuShare:
    """The CPUs this process may use, and why: `limited` when affinity, SLURM or a quota narrowed the machine's."""

    cpus: int
    machine: int
    limited: bool


def cgroup_quota(files: tuple[Path, ...] = CGROUP_FILES) -> float | None:
    """The cgroup's CPU quota in CPUs (cgroup v2 `cpu.max` "quota period", v1 `cfs_quota_us`/`cfs_period_us`),
    or None when there is none ("max", -1) or no file can be read."""
    for path in files:
        try:
            text = path.read_text().split()
            if path.name == "cpu.max":
                quota, period = text[0], (text[1] if len(text) > 1 else "100000")
            else:
                quota, period = text[0], (path.parent / "cpu.cfs_period_us").read_text().split()[0]
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1") or float(period) <= 0:
            return None
        return float(quota) / float(period)
    return None


def cpu_share(environ: dict[str, str] | None = None, quota: float | None = None,
              affinity: set[int] | None = None) -> CpuShare:
    """The CPUs this process may use: the least of its affinity mask, `$SLURM_CPUS_PER_TASK` and the cgroup quota
    (rounded up: a 1.5-CPU quota keeps 2 threads busy half the time each)."""
    environ = os.environ if environ is None else environ
    machine = os.cpu_count() or 1
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(machine))
    counts = [len(affinity) or machine]
    slurm = environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        counts.append(int(slurm))
    quota = cgroup_quota() if quota is None else quota
    if quota is not None and quota > 0:
        counts.append(max(1, math.ceil(quota)))
    cpus = max(1, min(counts))
    return CpuShare(cpus, machine, cpus < machine)


def default_threads(workers: int = 1, share: CpuShare | None = None, load: float | None = None) -> int:
    """Threads per worker: the CPUs this process may use, less other processes' load on them (only when that load
    is attributable: an unrestricted process's CPUs are the machine's), divided among `workers`; at least 1."""
    share = share or cpu_share()
    free = share.cpus
    if not share.limited:
        load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
        free = min(free, max(1, math.floor(share.cpus - load + 0.5)))
    return max(1, free // max(1, workers))


def parse_threads(value: str | int, where: str) -> int:
    """A thread count from --threads or $BENCH_THREADS: a whole number from 1 to the machine's CPU count x 4."""
    limit = 4 * (os.cpu_count() or 1)
    try:
        threads = int(str(value).strip())
    except ValueError:
        raise BenchError(f"{where} {value!r}: expected a whole number of threads from 1 to {limit}") from None
    if not 1 <= threads <= limit:
        raise BenchError(f"{where} {threads}: threads must be from 1 to {limit} (4 x this machine's CPUs)")
    return threads


def resolve_threads(option: int | None, workers: int = 1, environ: dict[str, str] | None = None) -> int:
    """--threads N, else $BENCH_THREADS, else `default_threads(workers)` capped by an explicit $OMP_NUM_THREADS
    (a job script that set it meant it)."""
    environ = os.environ if environ is None else environ
    if option is not None:
        return parse_threads(option, "--threads")
    if environ.get(THREADS_ENV, "").strip():
        return parse_threads(environ[THREADS_ENV], f"${THREADS_ENV}")
    threads = default_threads(workers)
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(omp)) if omp.isdigit() and int(omp) > 0 else threads


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that pin OpenMP and BLAS pools to `threads` (libraries not loaded yet, children)."""
    return {name: str(threads) for name in THREAD_ENV_VARS}
