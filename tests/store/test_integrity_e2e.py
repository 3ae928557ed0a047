"""Caches and checkpoints that cannot lie: honest hit/miss counts, and a bad checkpoint never sticks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config.grid import load_grid
from bench.run.context import RunContext
from bench.run.run_spec import run_spec
from bench.run.workbench import Workbench
from bench.sweep.grid import grid_cells
from tests.support.rows import query

REPO = Path(__file__).resolve().parents[2]
GRID = """
name: honest
teacher: effnet-lite0
student: bottleneck
method: kd
dataset: digits
seeds: [0]
epochs: 2
data: {image_size: 32, train_limit: 120, val_limit: 30, test_limit: 60}
hparams: {batch_size: 32}
"""


def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "honest.yaml"
    path.write_text(GRID)
    return path


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_run_that_ran_the_teacher_records_the_misses(tmp_path: Path) -> None:
    """A run's counts come from its first request (asked again for the probe and its taps); later runs hit."""
    probe, student = grid_cells(load_grid(grid_file(tmp_path)))
    bench = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    first = run_spec(student, bench, "s")  # its features are computed here, whatever it asks afterwards
    assert (first.cache_hits, first.cache_misses) == (0, 3)
    later = run_spec(probe, bench, "s")  # served from this process's memo
    assert (later.cache_hits, later.cache_misses) == (3, 0)
    fresh = run_spec(student, Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu")), "s")
    assert (fresh.cache_hits, fresh.cache_misses) == (3, 0)  # read from disk
    assert fresh.test_acc == first.test_acc


def bench_run(tmp_path: Path, db: str, run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", str(grid_file(tmp_path)), "--db", db, "--cache-dir",
         str(tmp_path / "cache"), "--run-dir", str(run_dir), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )


def rows(db: str) -> list[dict]:
    return query(db, "SELECT student, status, cache_hits, cache_misses, test_acc FROM runs ORDER BY id")


def counts(row: dict) -> tuple:
    """(status, cache hits, cache misses) of a runs row."""
    return row["status"], row["cache_hits"], row["cache_misses"]


@pytest.mark.slow
def test_grid_counts_honestly_across_processes_and_survives_a_garbage_checkpoint(tmp_path: Path) -> None:
    _, student = grid_cells(load_grid(grid_file(tmp_path)))
    planted = tmp_path / "runs" / student.key / "checkpoint.pt"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"\x80\x02garbage" * 100)  # e.g. a disk error in a killed worker's last save

    first = bench_run(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "runs")
    assert first.returncode == 0, first.stderr
    (probe_row, student_row) = rows(f"sqlite:///{tmp_path / 'a.db'}")
    assert counts(probe_row) == ("done", 0, 3)  # the first cell ran the teacher on train/val/test
    assert counts(student_row) == ("done", 3, 0)
    assert first.stderr.count("restarts from epoch 0") == 1
    assert not planted.exists() and len(list(planted.parent.glob("checkpoint.pt.corrupt-*"))) == 1

    again = bench_run(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "runs-b")  # new process, same cache
    assert again.returncode == 0, again.stderr
    assert [counts(row) for row in rows(f"sqlite:///{tmp_path / 'b.db'}")] == [("done", 3, 0), ("done", 3, 0)]
    clean = rows(f"sqlite:///{tmp_path / 'b.db'}")[1]
    assert clean["test_acc"] == student_row["test_acc"]  # clean run == restarted one
