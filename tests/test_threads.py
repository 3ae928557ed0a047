"""Threads that fit the machine: the CPUs a process may use, the default per worker, --threads and $BENCH_THREADS
honoured in the worker (torch.get_num_threads) and recorded in `runs`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.core.threads import CpuShare, cgroup_quota, cpu_share, default_threads, resolve_threads
from tests.support.paths import REPO


def test_the_share_is_the_least_of_affinity_slurm_and_the_cgroup_quota() -> None:
    eight = set(range(8))
    assert cpu_share({}, quota=None, affinity=eight).cpus == 8
    assert cpu_share({"SLURM_CPUS_PER_TASK": "3"}, quota=None, affinity=eight).cpus == 3
    assert cpu_share({"SLURM_CPUS_PER_TASK": "3"}, quota=1.5, affinity=eight).cpus == 2  # 1.5 CPUs keep 2 busy
    assert cpu_share({}, quota=None, affinity={0}).cpus == 1
    assert cpu_share({"SLURM_CPUS_PER_TASK": "junk"}, quota=None, affinity={0, 1}).cpus == 2


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_the_affinity_mask_of_this_process_is_read() -> None:
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(mask)})
    try:
        share = cpu_share({}, quota=None)
    finally:
        os.sched_setaffinity(0, mask)
    assert share.cpus == 1 and share.limited == ((os.cpu_count() or 1) > 1)
    assert default_threads(1, share, load=50.0) == 1


def test_cgroup_quotas_v2_and_v1_are_read_and_no_quota_is_none(tmp_path: Path) -> None:
    v2 = tmp_path / "v2" / "cpu.max"
    v2.parent.mkdir()
    v2.write_text("250000 100000\n")
    assert cgroup_quota((v2,)) == 2.5
    v2.write_text("max 100000\n")
    assert cgroup_quota((v2,)) is None
    v1 = tmp_path / "v1" / "cpu.cfs_quota_us"
    v1.parent.mkdir()
    v1.write_text("50000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota((tmp_path / "missing" / "cpu.max", v1)) == 0.5
    v1.write_text("-1\n")
    assert cgroup_quota((v1,)) is None


def test_the_default_divides_the_free_cpus_among_workers_and_never_exceeds_them() -> None:
    whole = CpuShare(cpus=16, machine=16, limited=False)
    assert default_threads(1, whole, load=0.0) == 16
    assert default_threads(4, whole, load=0.0) == 4
    assert default_threads(3, whole, load=0.0) == 5  # never 3 x 6 > 16
    assert default_threads(1, whole, load=12.2) == 4  # 12 CPUs busy with other work: 4 left
    assert default_threads(1, CpuShare(2, 2, False), load=1.9) == 1  # a busy 2-core box: one thread per worker
    assert default_threads(64, whole, load=0.0) == 1
    slurm = CpuShare(cpus=8, machine=64, limited=True)  # the machine's load is other jobs' on other cores
    assert default_threads(1, slurm, load=60.0) == 8 and default_threads(2, slurm, load=60.0) == 4


def test_the_option_wins_over_the_environment_and_bad_values_are_one_line_errors() -> None:
    assert resolve_threads(3, environ={"BENCH_THREADS": "1"}) == 3
    assert resolve_threads(None, environ={"BENCH_THREADS": "2"}) == 2
    assert resolve_threads(None, environ={"OMP_NUM_THREADS": "1"}) == 1  # a job script's explicit cap
    with pytest.raises(BenchError, match=r"--threads 0: threads must be from 1 to"):
        resolve_threads(0, environ={})
    with pytest.raises(BenchError, match=r"\$BENCH_THREADS 'two': expected a whole number"):
        resolve_threads(None, environ={"BENCH_THREADS": "two"})


GRID = ("teacher: effnet-lite0\nstudent: bottleneck\nmethod: kd\ndataset: digits\nepochs: 1\n"
        "data: {image_size: 32, train_limit: 60, val_limit: 20, test_limit: 20}\n")


def bench_run(tmp_path: Path, name: str, *options: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`bench run` on a two-cell grid (teacher reference + one head student, 60 images, 1 epoch)."""
    grid = tmp_path / f"{name}.yaml"
    grid.write_text(GRID)
    args = [sys.executable, "-m", "bench", "run", str(grid), "--db", f"sqlite:///{tmp_path / name}.db",
            "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs"), "--device", "cpu",
            "--keep", "none", *options]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=1800)  # a safety net only: the work is bounded by the grid (2 cells, 60 images)


def recorded_threads(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT threads FROM runs ORDER BY id")]


@pytest.mark.slow
def test_threads_are_honoured_in_the_worker_and_recorded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "BENCH_THREADS")}
    env = {**env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    bad = bench_run(tmp_path, "bad", env={**env, "BENCH_THREADS": "two"})
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: $BENCH_THREADS 'two': expected a whole number of threads from 1 to {4 * (os.cpu_count() or 1)}"]
    assert not (tmp_path / "bad.db").exists()
    pinned = bench_run(tmp_path, "pinned", "--threads", "2", env={**env, "BENCH_THREADS": "1"})
    assert pinned.returncode == 0, pinned.stderr
    assert recorded_threads(tmp_path / "pinned.db") == [2, 2]  # the option wins over $BENCH_THREADS
    default = bench_run(tmp_path, "default", env={**env, "SLURM_CPUS_PER_TASK": "1"})  # torch alone would use all
    assert default.returncode == 0, default.stderr
    assert recorded_threads(tmp_path / "default.db") == [1, 1]  # the job owns one CPU: one thread
