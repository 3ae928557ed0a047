"""Peak RSS of `bench run` over an image-folder dataset of 224 px JPEGs (issue 15: memory at scale).

    PYTHONPATH=$PWD python benchmarks/bench_memory.py --images 20000 --dir /tmp/bench-memory

Builds (once) DIR/images/<class>/*.jpg (synthetic, `--classes` colours), then runs one grid per student
(a head student, then a standalone one; effnet-lite0 teacher, kd, 1 epoch) under /usr/bin/time -v and prints
each run's peak RSS beside the size of the memory-mapped decoded-image cache. Splits are views of that memmap,
so the target is: peak RSS <= 2 GB + the memmap file (touched file pages count in RSS).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

GRID = """name: memory-{student}
teacher: effnet-lite0
student: [{student}]
method: [kd]
dataset: imagefolder
seeds: [0]
epochs: 1
data:
  root: {root}
  decode_size: {size}
  student_image_size: {student_size}
{teacher_size}hparams:
  batch_size: 128
"""
BUDGET_BYTES = 2 * 2**30


def write_image(path: Path, label: int, seed: int, size: int) -> None:
    """One synthetic JPEG: a class colour plus blocky noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colour = np.array([(label * 53) % 256, (label * 97) % 256, (label * 151) % 256], dtype=np.int16)
    blocks = rng.integers(-60, 61, (size // 8, size // 8, 3), dtype=np.int16) + colour
    pixels = np.kron(np.clip(blocks, 0, 255).astype(np.uint8), np.ones((8, 8, 1), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=85)


def build_folder(root: Path, count: int, classes: int, size: int) -> None:
    """root/class<k>/<i>.jpg, written once (a complete tree is reused)."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{count} {classes} {size}":
        return
    started = time.perf_counter()
    jobs = [(root / f"class{i % classes:02d}" / f"{i:06d}.jpg", i % classes, i) for i in range(count)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: write_image(*job, size), jobs))
    done.write_text(f"{count} {classes} {size}")
    print(f"wrote {count} {size}x{size} JPEGs in {time.perf_counter() - started:.0f} s", flush=True)


def anon_rss(pid: int) -> int:
    """RssAnon of `pid` and its children in bytes (0 once gone): the RAM that is not the memmap's file pages."""
    total = 0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, AttributeError):
        return total
    return total + sum(anon_rss(int(child)) for child in children)


def peak_rss(student: str, args: argparse.Namespace, base: Path) -> tuple[int, int, float, int]:
    """Run the one-student grid under /usr/bin/time -v: (peak RSS, peak anonymous RSS, seconds, exit code)."""
    teacher_size = f"  image_size: {args.teacher_size}\n" if args.teacher_size else ""
    grid = base / f"grid-{student}.yaml"
    grid.write_text(GRID.format(student=student, root=base / "images", size=args.size,
                                student_size=args.student_size, teacher_size=teacher_size))
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "bench", "run", str(grid), "--db",
               f"sqlite:///{base / 'results.db'}", "--cache-dir", str(base / "cache"), "--device", args.device,
               "--run-dir", str(base / "runs")]
    started, anon_peak = time.perf_counter(), 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        while process.poll() is None and time.perf_counter() - started < args.timeout:
            anon_peak = max(anon_peak, anon_rss(process.pid))
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
            print(f"{student}: no result within {args.timeout} s", flush=True)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if process.returncode != 0 or match is None:
        print(stdout[-2000:], stderr[-4000:], sep="\n", file=sys.stderr)
    rss = int(match.group(1)) * 1024 if match else 0
    return rss, anon_peak, time.perf_counter() - started, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="JPEG and decoded-cache size")
    parser.add_argument("--teacher-size", type=int, default=None, help="data.image_size; default: native")
    parser.add_argument("--student-size", type=int, default=32, help="standalone student input size")
    parser.add_argument("--students", default="projection,resnet", help="one grid per student, in order")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per grid")
    parser.add_argument("--dir", type=Path, default=None, help="reused across calls; default: a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        base = args.dir or Path(temp)
        build_folder(base / "images", args.images, args.classes, args.size)
        for student in args.students.split(","):
            rss, anon, seconds, code = peak_rss(student, args, base)
            memmap = sum(path.stat().st_size for path in (base / "cache" / "images").glob("*.npy"))
            verdict = "within" if rss <= BUDGET_BYTES + memmap else "OVER"
            print(f"{student}: exit {code}, {seconds:.0f} s, peak RSS {rss / 2**30:.2f} GiB (anonymous, sampled: "
                  f"{anon / 2**30:.2f} GiB); memmap cache "
                  f"{memmap / 2**30:.2f} GiB; {verdict} 2 GiB + memmap ({(BUDGET_BYTES + memmap) / 2**30:.2f} GiB)",
                  flush=True)


if __name__ == "__main__":
    main()
