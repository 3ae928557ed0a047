"""What a command that has nothing to do costs: `bench runs` and a finished grid's re-run, whole process, CPU seconds.

Each checkout (this one, and `--compare PATH` for another, e.g. the main branch before issue 28) gets its own
database: a two-cell grid (effnet-lite0 -> bottleneck head, 60 digits images, 1 epoch) is run once to finish it,
then each command runs `--repeats` times in a fresh process and the median of its user+sys CPU seconds (the
children's rusage) and wall seconds is printed beside `python -c "import sqlalchemy"`, the floor the issue names.
`-X importtime` then lists the heaviest top-level imports of the re-run.

    python benchmarks/bench_imports.py [--compare /work/main] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
GRID = ("teacher: effnet-lite0\nstudent: bottleneck\nmethod: kd\ndataset: digits\nepochs: 1\n"
        "data: {image_size: 32, train_limit: 60, val_limit: 20, test_limit: 20}\n")


def timed(args: list[str], repo: Path, cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def median_of(args: list[str], repo: Path, cwd: Path, repeats: int) -> tuple[float, float]:
    runs = [timed(args, repo, cwd) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def heaviest_imports(args: list[str], repo: Path, cwd: Path, top: int = 6) -> list[tuple[str, float]]:
    """The top-level imports (nesting depth 0) with the largest cumulative time, in seconds."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([args[0], "-X", "importtime", *args[1:]], cwd=cwd, env=env, capture_output=True,
                            text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # depth 0 has one space after the bar
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:top]


def measure(repo: Path, repeats: int) -> None:
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "g.yaml").write_text(GRID)
        common = ["--db", f"sqlite:///{work / 'r.db'}"]
        run = [python, "-m", "bench", "run", "g.yaml", *common, "--cache-dir", str(work / "cache"),
               "--run-dir", str(work / "runs"), "--keep", "none"]  # --device auto: cpu here
        timed(run, repo, work)  # finish the grid once
        rows = {"python -c 'import sqlalchemy'": median_of([python, "-c", "import sqlalchemy"], repo, work, repeats),
                "bench runs": median_of([python, "-m", "bench", "runs", *common], repo, work, repeats),
                "bench run (finished grid)": median_of(run, repo, work, repeats)}
        print(f"\n{repo} (median of {repeats}, one thread, load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
        for name, (cpu, wall) in rows.items():
            print(f"  {name:32s} CPU {cpu:6.2f} s   wall {wall:6.2f} s")
        print("  heaviest top-level imports of the finished grid's re-run (cumulative s): "
              + ", ".join(f"{name} {seconds:.2f}" for name, seconds in heaviest_imports(run, repo, work)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="another checkout to measure the same way (e.g. /work/main)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for repo in [HERE, *([args.compare.resolve()] if args.compare else [])]:
        measure(repo, args.repeats)


if __name__ == "__main__":
    main()
