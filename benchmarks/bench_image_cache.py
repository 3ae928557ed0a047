"""Images/s of the decoded-image cache: first pass (decode + resize + write) and later passes (memmap reads).

    PYTHONPATH=$PWD python benchmarks/bench_image_cache.py --images 2000 --size 64 --passes 3

Writes a generated tree of JPEGs (random sizes around 500x375, like COCO) under a temp directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write_tree(root: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` noisy JPEGs of varied size in root/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        height, width = int(rng.integers(300, 450)), int(rng.integers(400, 640))
        base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        pixels = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
        path = root / f"class{index % 10}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=85)
        paths.append(path)
    return paths


def timed_pass(paths: list[Path], size: int, cache: Path) -> float:
    """Seconds to get every image as a uint8 array through the cache, touching every pixel."""
    from bench.data.imagecache import cached_images

    start = time.perf_counter()
    decoded = cached_images(paths, size, "benchmark/train", cache)
    total = 0
    for offset in range(0, len(decoded.images), 256):  # read like an epoch does, batch by batch
        total += int(np.asarray(decoded.images[offset : offset + 256]).sum(dtype=np.int64) > -1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        paths = write_tree(Path(temp) / "jpegs", args.images)
        print(f"wrote {len(paths)} JPEGs in {time.perf_counter() - started:.1f} s")
        for number in range(args.passes):
            seconds = timed_pass(paths, args.size, Path(temp) / "cache")
            label = "first pass (decode + resize + write)" if number == 0 else f"pass {number + 1} (memmap cache)"
            print(f"{label}: {len(paths) / seconds:,.0f} images/s ({seconds:.2f} s, {args.size}x{args.size})")


if __name__ == "__main__":
    main()
