"""What consistent teaching costs: data.teacher_views cached (K passes once, then training) and online, relative
to fixed, in the consistency study's setting, measured in one process on this machine.

    PYTHONPATH=$PWD python benchmarks/bench_teacher_views.py                # studies/consistency.yaml, seed 0
    PYTHONPATH=$PWD python benchmarks/bench_teacher_views.py --epochs 2     # shorter: the same ratios' shape

Each kd cell of the study (seed 0) runs through the real run pipeline (bench.run.run_spec) in this order: fixed
(its teacher pass and the fine-tune are computed first and not counted), then cached K=2, cached K=8 (each pays
its view cache, in a fresh cache directory for views), then online. Per mode: the teacher's seconds on views
(runs.teacher_view_s), the training seconds (epochs x epoch_seconds: an online run's teacher forwards are inside
them) and their sum, and that sum as a ratio of fixed's. Ratios are measured in one run on one machine; a busy
machine shifts all of them, so the header prints the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "consistency.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="override the study's epochs (shorter runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="teacher pass / fine-tune cache (reused)")
    args = parser.parse_args()

    import torch

    from bench.config.grid import load_grid
    from bench.run.context import RunContext
    from bench.run.run_spec import run_spec
    from bench.run.workbench import Workbench

    torch.set_num_threads(args.threads)
    specs = [spec for spec in load_grid(args.study).specs if spec.method == "kd" and spec.seed == 0]
    if args.epochs is not None:
        specs = [replace(spec, epochs=args.epochs) for spec in specs]
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-views-"))
    print(f"# {args.study.name}: {len(specs)} kd cells, seed 0, {specs[0].epochs} epochs, {args.threads} thread(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    for spec in specs:
        data = spec.data_dict
        mode = data.get("teacher_views", "fixed")
        label = f"{mode} K={data.get('teacher_view_count', 8)}" if mode == "cached" else mode
        views_dir = Path(tempfile.mkdtemp(prefix="bench-view-cache-"))
        if mode == "cached":  # a fresh view cache: this run pays its K passes; the shared entries are linked in
            shutil.copytree(cache_dir, views_dir, dirs_exist_ok=True, symlinks=True)
        bench = Workbench(RunContext(cache_dir=views_dir if mode == "cached" else cache_dir, device="cpu"))
        if mode == "fixed":  # warm the fixed pass and the fine-tune so that no mode pays them
            run_spec(replace(spec, epochs=1), bench, "bench-views")
        start = time.perf_counter()
        record = run_spec(spec, bench, "bench-views")
        wall = time.perf_counter() - start
        train = record.epoch_seconds * spec.epochs
        views = record.teacher_view_s or 0.0
        cost = train + (views if mode == "cached" else 0.0)  # online: its teacher seconds are inside training
        rows.append((label, views, record.teacher_view_images, train, cost, wall, record.test_acc))
        shutil.rmtree(views_dir, ignore_errors=True)
    base = rows[0][4]
    print(f"{'mode':<12} {'teacher on views s':>18} {'views':>7} {'training s':>10} {'total s':>8} {'x fixed':>8} "
          f"{'wall s':>7} {'test %':>7}")
    for label, views, images, train, cost, wall, acc in rows:
        print(f"{label:<12} {views:>18.1f} {images:>7} {train:>10.1f} {cost:>8.1f} {cost / base:>8.2f} {wall:>7.1f} "
              f"{100 * acc:>7.1f}")
    print("cached: its K passes are paid once per sweep and shared by every student and seed reading them; "
          "the total here charges them to this one run")


if __name__ == "__main__":
    main()
