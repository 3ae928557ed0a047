"""`bench run --jobs N` and `--workers-per-device K`: local workers share a grid through the database (every cell
once, the same numbers as one process, the CPUs divided among them) and each local worker sees only its GPU."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.cli.launch import launch_slots
from bench.core.errors import BenchError
from bench.run.context import RunContext
from bench.sweep.devices import WorkerDevice, visible_gpus, worker_devices
from bench.sweep.launch import WorkerJob, WorkerResult, local_job
from bench.sweep.queue import WorkerOptions
from tests.support.limits import SAFETY_NET_S
from tests.support.paths import REPO
from tests.sweep.test_workers import write_grid


def test_gpus_are_dealt_round_robin_k_workers_each_at_most() -> None:
    four = worker_devices(None, 2, "cuda", None, 4)  # default: GPUs x K
    assert [slot.visible for slot in four] == ["0", "1", "2", "3", "0", "1", "2", "3"]
    assert {slot.device for slot in four} == {"cuda"}  # each child sees one GPU, as cuda:0
    assert [slot.visible for slot in worker_devices(3, 2, "auto", None, 2)] == ["0", "1", "0"]
    with pytest.raises(BenchError, match=r"--jobs/--workers 5: 2 GPU\(s\) x --workers-per-device 2 take at most 4"):
        worker_devices(5, 2, "cuda", None, 2)


def test_the_parent_mask_is_kept_and_cuda_n_pins_every_worker_to_that_gpu() -> None:
    mask = "GPU-aaaa, 3,MIG-bbbb"
    assert visible_gpus(mask, 3) == ["GPU-aaaa", "3", "MIG-bbbb"]
    assert visible_gpus(mask, 2) == ["GPU-aaaa", "3"]  # CUDA stops at the count it reports
    assert [slot.visible for slot in worker_devices(None, 3, "cuda:1", mask, 3)] == ["3", "3", "3"]
    assert [slot.visible for slot in worker_devices(2, 1, "cuda", "5,7", 2)] == ["5", "7"]  # not "0", "1"
    with pytest.raises(BenchError, match=r"--device cuda:3: this process sees 3 GPU\(s\), cuda:0 to cuda:2"):
        worker_devices(None, 1, "cuda:3", mask, 3)
    with pytest.raises(BenchError, match="no CUDA GPU is visible"):
        worker_devices(None, 1, "cuda", "", 0)


def test_cpu_workers_keep_their_device_and_k_is_refused_off_cuda() -> None:
    assert worker_devices(3, 1, "cpu", None, 0) == [WorkerDevice("cpu")] * 3
    assert worker_devices(None, 1, "auto", None, 0) == [WorkerDevice("auto")]  # no GPU: one worker, as before
    with pytest.raises(BenchError, match="--workers-per-device 2: packs workers on CUDA GPUs"):
        worker_devices(2, 2, "cpu", None, 0)
    for workers, per_device in ((0, 1), (1, 0)):
        with pytest.raises(BenchError, match="must be at least 1"):
            worker_devices(workers, per_device, "cuda", None, 1)
    with pytest.raises(BenchError, match="a SLURM array task is one worker"):
        launch_slots("slurm", 2, 2, "cuda")
    assert launch_slots("slurm", 3, 1, "cuda") == [WorkerDevice("cuda")] * 3  # SLURM gives each task its GPUs


def test_a_local_worker_sees_only_its_gpu_before_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    seen = {}

    def work(job: WorkerJob) -> WorkerResult:
        seen.update(visible=os.environ["CUDA_VISIBLE_DEVICES"], device=job.context.device, threads=job.context.threads)
        return WorkerResult("ok", done=2)

    monkeypatch.setattr(WorkerJob, "_work", work)
    job = WorkerJob("g", "sqlite:///x.db", RunContext(device="auto", threads=3), WorkerOptions(), {})
    result = local_job(job, WorkerDevice("cuda", "2"))()
    assert seen == {"visible": "2", "device": "cuda", "threads": 3} and (str(result), result.done) == ("ok", 2)
    assert local_job(job, WorkerDevice("cpu")).visible is None  # a CPU worker leaves the environment alone


def test_bad_jobs_options_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: x\n")
    db = tmp_path / "r.db"
    for args, field in ((["--jobs", "0"], "--jobs/--workers 0"),
                        (["--workers-per-device", "2"], "--workers-per-device"),
                        (["--jobs", "2", "--enqueue-only"], "--enqueue-only")):
        result = CliRunner().invoke(app, ["run", str(grid), "--db", f"sqlite:///{db}", "--device", "cpu", *args])
        assert result.exit_code == 2 and field in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not db.exists()


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT spec_key, status, val_acc, test_acc, threads FROM runs ORDER BY spec_key"
                                   ).fetchall()


def completed_per_key(db: Path) -> dict[str, int]:
    """How many COMPLETE Optuna trials each spec key has: 1 each when every cell ran exactly once."""
    with sqlite3.connect(db) as connection:
        found = connection.execute(
            "SELECT a.value_json, count(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "WHERE a.key = 'spec_key' AND t.state = 'COMPLETE' GROUP BY a.value_json").fetchall()
    return dict(found)


@pytest.mark.slow
def test_two_jobs_run_every_cell_once_with_the_numbers_of_one_job(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    grid = write_grid(tmp_path, cache, name="jobs", seeds="[0, 1]")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "BENCH_THREADS")}
    env = {**env, "PYTHONPATH": str(REPO), "SLURM_CPUS_PER_TASK": "2"}  # this process may use 2 CPUs: 1 per job

    def bench_run(name: str, *options: str) -> subprocess.CompletedProcess[str]:
        db = f"sqlite:///{tmp_path / name}"
        return subprocess.run([sys.executable, "-m", "bench", "run", str(grid), "--db", db, "--device", "cpu",
                               "--cache-dir", str(cache), "--run-dir", str(tmp_path / f"{name}.runs"),
                               "--keep", "none", *options], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=SAFETY_NET_S)  # a safety net: the work is 5 cells of 200 images, 1 epoch

    two = bench_run("two.db", "--jobs", "2", "--log-dir", str(tmp_path / "logs"))
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 local workers (1 threads each)" in two.stderr and "worker job" in two.stderr
    assert "5 cells, 0 already done, 5 run now, 0 failed" in two.stdout
    one = bench_run("one.db", "--threads", "1")
    assert one.returncode == 0, one.stderr
    together, alone = rows(tmp_path / "two.db"), rows(tmp_path / "one.db")
    assert len(together) == 5 and {row[1] for row in together} == {"done"}
    assert together == alone  # the same cells, the same numbers, each stored once, 1 thread per worker recorded
    trials = completed_per_key(tmp_path / "two.db")
    assert len(trials) == 5 and set(trials.values()) == {1}  # one COMPLETE trial per cell: none ran twice
    again = bench_run("two.db", "--jobs", "2", "--log-dir", str(tmp_path / "logs"))
    assert again.returncode == 0 and "5 already done, 0 run now" in again.stdout and "worker job" not in again.stderr
