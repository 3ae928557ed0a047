"""How soon a restarted `bench run` takes back the cell that kill -9 or Ctrl-C stopped mid-cell.

    PYTHONPATH=$PWD python benchmarks/bench_resume.py [--grid demo|digits] [--stops "kill -9,Ctrl-C"]

For each stop: a fresh SQLite database and run directory; `bench run GRID` in its own process until the first
student cell has saved an epoch checkpoint; then SIGKILL (kill -9) or SIGINT (Ctrl-C); then a second `bench run GRID`,
timed from its start until it claims a cell (a new RUNNING trial). It prints that time, process start-up and teacher
preflight included, and whether the claimed cell is the stopped one (it must be: retried and interrupted cells are
claimed before fresh ones). The restart is then stopped with Ctrl-C: the rest of the grid is not run.

`--grid demo` is studies/demo.yaml itself (Fashion-MNIST, the fine-tuned effnet-lite0 teacher, 15-epoch cells; the
first run fine-tunes the teacher unless --cache-dir already holds it); `--grid digits` is the small grid of
tests/faults/test_kill_resume.py. Exit code 0 either way: a benchmark reports, it does not gate.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.config.grid import load_grid  # noqa: E402
from bench.core.names import SPEC_KEY_ATTR  # noqa: E402
from bench.core.spec import ExperimentSpec  # noqa: E402
from bench.sweep.checkpoint import Checkpointer  # noqa: E402
from tests.support.limits import bench_env  # noqa: E402

SIGNALS = {"kill -9": signal.SIGKILL, "Ctrl-C": signal.SIGINT}
LIMIT_S = 3600.0  # a safety net per phase, not a goal


def start_run(grid: Path, db: str, cache: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    """`python -m bench run GRID` in its own process, its output appended to `log`."""
    command = [sys.executable, "-m", "bench", "run", str(grid), "--db", db, "--device", "cpu",
               "--cache-dir", str(cache), "--run-dir", str(run_dir)]
    return subprocess.Popen(command, cwd=REPO, env=bench_env(), stdout=log.open("a"), stderr=subprocess.STDOUT)


def running_cells(db: str) -> dict[int, str]:
    """RUNNING trial id -> the spec key of its cell."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT t.trial_id, a.value_json FROM trials t LEFT JOIN trial_user_attributes a "
                f"ON a.trial_id = t.trial_id AND a.key = '{SPEC_KEY_ATTR}' WHERE t.state = 'RUNNING'"))
            return {trial: (value or "").strip('"') for trial, value in rows}
    except sa.exc.OperationalError:  # no tables yet
        return {}
    finally:
        engine.dispose()


def wait_for(what: str, check, process: subprocess.Popen, log: Path):  # noqa: ANN001, ANN201
    """Poll `check` until it returns something truthy; the run must stay alive meanwhile."""
    deadline = time.monotonic() + LIMIT_S
    while not (found := check()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench run ended or hung while waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return found


def one_stop(stop: str, grid: Path, cache: Path, folder: Path) -> tuple[float, bool]:
    """Stop the first run mid-cell with `stop`, restart it; (seconds until the restart claimed a cell, whether
    that cell was the stopped one)."""
    db, run_dir, log = f"sqlite:///{folder / 'results.db'}", folder / "runs", folder / "bench-run.log"
    specs: list[ExperimentSpec] = load_grid(grid).specs
    first = start_run(grid, db, cache, run_dir, log)
    began = time.monotonic()
    stopped = wait_for("a saved epoch", lambda: next(
        (spec for spec in specs if (Checkpointer(run_dir, spec.key).saved_epoch() or 0) >= 1), None), first, log)
    print(f"{stop}: first run saved an epoch of {stopped.student}/{stopped.method} seed {stopped.seed} after "
          f"{time.monotonic() - began:.0f} s; stopping it", flush=True)
    first.send_signal(SIGNALS[stop])
    first.wait(timeout=120)
    dead = set(running_cells(db))  # kill -9 leaves its trial RUNNING; Ctrl-C fails and re-enqueues it
    started = time.monotonic()
    second = start_run(grid, db, cache, run_dir, log)
    claimed = wait_for("a claimed cell", lambda: {k: v for k, v in running_cells(db).items() if k not in dead},
                       second, log)
    seconds = time.monotonic() - started
    second.send_signal(signal.SIGINT)  # the rest of the grid is not what is measured
    second.wait(timeout=300)
    same = stopped.key in claimed.values()
    print(f"{stop}: the restart claimed {'the stopped' if same else 'ANOTHER'} cell after {seconds:.1f} s "
          "(start-up and preflight included)", flush=True)
    return seconds, same


def digits_grid(folder: Path) -> Path:
    """The grid of tests/faults/test_kill_resume.py: 6 digits cells of 3 epochs."""
    from tests.sweep.test_workers import GRID

    path = folder / "digits.yaml"
    path.write_text(GRID.format(name="together", students="[resnet, projection, bottleneck]",
                                methods="[scratch, kd]", seeds="[0]", epochs=3, train=100))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=["demo", "digits"], default="demo")
    parser.add_argument("--stops", default="kill -9,Ctrl-C", help="comma-separated: kill -9, Ctrl-C")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="feature/fine-tune cache [default: a new temp dir shared by the stops, so only the "
                        "first run fine-tunes the teacher]")
    args = parser.parse_args()
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-resume-cache-"))
    results = []
    for stop in [s.strip() for s in args.stops.split(",") if s.strip()]:
        with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
            grid = REPO / "studies" / "demo.yaml" if args.grid == "demo" else digits_grid(Path(tmp))
            results.append((stop, *one_stop(stop, grid, cache, Path(tmp))))
    for stop, seconds, same in results:
        print(f"{args.grid} grid, {stop}: stopped cell claimed {'first' if same else 'NOT first'} after "
              f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
