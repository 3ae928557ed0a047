"""How long a preempted SLURM task's cell waits before another task runs it again (`bench launch` on a live SLURM).

    python benchmarks/bench_preemption.py [--db URL] [--repeats 3]

Starts a one-node SLURM on 127.0.0.1 (tests/support/slurm.py: munged, slurmctld, slurmd; as root, with Debian's
slurm-wlm and munge installed: `make bench-slurm`), launches a 3-task array on a tiny digits grid (two 4-epoch ResNet
cells, so one task idles), sends `scancel --signal=TERM` to the task of a cell that saved an epoch, and prints the
seconds until another task runs that cell (from its checkpoint). Goal: under 10 s; before SIGTERM was handled the
cell waited out the heartbeat grace period (120 s by default). The database is SQLite in a temp dir unless --db
names one (e.g. a PostgreSQL URL). Exit code 0 either way: a benchmark reports, it does not gate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.slurm.launching import done_rows, launch, preempt_mid_cell, wait_jobs_gone, write_grid  # noqa: E402
from tests.slurm.test_live_slurm import RESUME_GOAL_S, warm_cache  # noqa: E402
from tests.support.slurm import running_slurm  # noqa: E402


def one_preemption(slurm, db: str | None, folder: Path, number: int) -> float:  # noqa: ANN001
    """One launch, one SIGTERM; the seconds until the preempted cell ran again."""
    name = f"preempt{number}"
    grid = write_grid(folder, name, "[resnet]", "[scratch, kd]", epochs=4, train=200, seed=number)  # new cells
    warm_cache(grid, folder)
    url = db or f"sqlite:///{folder / 'results.db'}"
    job = launch(slurm, grid, url, folder, 3, "--heartbeat-interval", "2")
    key, task, seconds = preempt_mid_cell(slurm, url, name, folder)
    wait_jobs_gone(slurm, job, folder, limit_s=600)
    row = next(row for row in done_rows(url) if row[0] == key)
    print(f"run {number}: SIGTERM to task {task}; its cell ran again after {seconds:.1f} s, finished {row[1]} "
          f"(resumed after epoch {row[2]})", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL [default: SQLite in a temp dir]")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with running_slurm() as slurm, tempfile.TemporaryDirectory(prefix="bench-preempt-") as tmp:
        times = [one_preemption(slurm, args.db, Path(tmp), number) for number in range(args.repeats)]
    median = statistics.median(times)
    verdict = "PASS" if median < RESUME_GOAL_S else "FAIL"
    print(f"preempted cell running again after {median:.1f} s (median of {len(times)}; min {min(times):.1f}, "
          f"max {max(times):.1f}); goal < {RESUME_GOAL_S:.0f} s (was the 120 s grace period): {verdict}")


if __name__ == "__main__":
    main()
