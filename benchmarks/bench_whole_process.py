"""Cached `bench run --grid` vs a teacher-every-batch loop, whole process, CPU seconds (issue 28's first goal).

Each side runs in its own fresh process with one thread, and each process's user+sys CPU seconds (the children's
rusage) and wall seconds are printed:
- `bench run --grid` on an empty cache and database: S head-student cells x E epochs (projection and bottleneck on
  the pooled tap, seeds 0 .. S/2-1, scratch, digits through effnet-lite0 at --image-size px), with everything a
  grid does: imports, the teacher pass into the cache, the teacher's linear-probe reference run, each cell's
  inference cost, checkpoints and database rows (`--bundle auto`, the default, and `--bundle off`);
- this script with `--naive`: benchmarks/bench_harness.py's loop in a process of its own (imports and loading the
  teacher included), the same S students and epochs, the teacher run on every train batch of every epoch and on
  val each epoch, test at the end.
The goal the issue sets is a ratio of at least 0.9 x S x E.

    PYTHONPATH=$PWD python benchmarks/bench_whole_process.py [--students 4] [--epochs 5] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "benchmarks"))

from bench_imports import timed  # noqa: E402 - (CPU s, wall s) of one child process, one OMP thread


def grid(students: int, epochs: int, image_size: int) -> str:
    seeds = list(range(max(1, students // 2)))
    return (f"name: whole-process\nteacher: effnet-lite0\nstudent: [projection, bottleneck]\nmethod: scratch\n"
            f"dataset: digits\nseeds: {seeds}\nepochs: {epochs}\ndata: {{image_size: {image_size}}}\n"
            "hparams: {lr: 0.003, batch_size: 64, weight_decay: 0.0001}\n")


def naive(students: int, epochs: int, image_size: int) -> None:
    """The teacher-every-batch loop, in this process."""
    import torch
    from bench_harness import naive_grid, workbench

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        bench, data = workbench(Path(cache), image_size)
        naive_grid(bench, data, students, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4, help="cells (projection and bottleneck, S/2 seeds)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--naive", action="store_true", help="run the teacher-every-batch loop here (internal)")
    args = parser.parse_args()
    s, e, size = 2 * max(1, args.students // 2), args.epochs, args.image_size
    if args.naive:
        naive(s, e, size)
        return
    python = sys.executable
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "g.yaml").write_text(grid(s, e, size))
        for bundle in ("auto", "off"):
            state = work / bundle
            state.mkdir()
            figures[f"bench run --grid (--bundle {bundle})"] = timed(
                [python, "-m", "bench", "run", "--grid", str(work / "g.yaml"), "--db", f"sqlite:///{state / 'r.db'}",
                 "--cache-dir", str(state / "cache"), "--run-dir", str(state / "runs"), "--threads", "1",
                 "--bundle", bundle], HERE, work)
        figures["teacher every batch"] = timed(
            [python, str(Path(__file__).resolve()), "--naive", "--students", str(s), "--epochs", str(e),
             "--image-size", str(size)], HERE, work)
    print(f"{s} head-student cells x {e} epochs, digits through effnet-lite0 at {size} px, one thread, "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, (cpu, wall) in figures.items():
        print(f"  {name:34s} CPU {cpu:7.1f} s   wall {wall:7.1f} s")
    naive_cpu = figures["teacher every batch"][0]
    for name, (cpu, _) in figures.items():
        if name.startswith("bench run"):
            print(f"  {name}: {naive_cpu / cpu:.1f}x less CPU than teacher every batch "
                  f"(goal >= {0.9 * s * e:.1f}x)")


if __name__ == "__main__":
    main()
