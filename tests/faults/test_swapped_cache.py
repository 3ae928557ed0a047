"""Swapped cache entries: every file of a real sweep's feature cache replaced by another of the same shape, and
every run's numbers come out unchanged (the entry's stored key is compared with the one asked for)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from bench.config.grid import load_grid
from bench.data.splits import DataConfig, load_dataset
from bench.run.context import RunContext
from bench.run.run_spec import run_spec
from bench.run.workbench import Workbench
from bench.sweep.grid import grid_cells
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.features import cached_teacher_outputs
from tests.test_cache import CountingTeacher

GRID = """
name: swapped
teacher: effnet-lite0
student: bottleneck
method: [kd, feature]
dataset: digits
seeds: [0]
epochs: 1
data: {image_size: 32, train_limit: 40, val_limit: 40, test_limit: 40}
hparams: {batch_size: 32}
"""


def shape_groups(root: Path) -> list[list[Path]]:
    """Cache files grouped by what they hold (tensor names and shapes): files a swap could pass off as another."""
    groups: dict[tuple, list[Path]] = defaultdict(list)
    for path in sorted(root.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            groups[tuple((name, tuple(handle.get_slice(name).get_shape())) for name in sorted(handle.keys()))
                   ].append(path)
    return [paths for paths in groups.values() if len(paths) > 1]


def entry_of(root: Path, split: str) -> Path:
    """The one cache file whose stored key names `split`."""
    (path,) = [path for path in root.glob("*.safetensors")
               if json.loads(safe_open(str(path), framework="pt").metadata()["parts"])["split"] == split]
    return path


def rotate(paths: list[Path]) -> None:
    """Each file takes the next one's bytes (a cyclic swap: no file keeps its own)."""
    contents = [path.read_bytes() for path in paths]
    for path, body in zip(paths, contents[1:] + contents[:1], strict=True):
        path.write_bytes(body)


def test_a_swapped_val_and_test_entry_is_a_miss_and_recomputed(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    data = load_dataset("digits", DataConfig(train_limit=30, val_limit=20, test_limit=20, image_size=16))
    cache, teacher = FeatureCache(tmp_path), CountingTeacher()
    truth = {split: cached_teacher_outputs(teacher, data, split, ("pooled",), cache, torch.device("cpu"))[0]
             for split in ("val", "test")}
    val_file, test_file = (entry_of(cache.root, split) for split in ("val", "test"))
    val_bytes = val_file.read_bytes()
    val_file.write_bytes(test_file.read_bytes())
    test_file.write_bytes(val_bytes)  # same shape, both valid safetensors with a good content hash
    for split in ("val", "test"):
        seen = teacher.images_seen
        got, event = cached_teacher_outputs(teacher, data, split, ("pooled",), FeatureCache(tmp_path),
                                            torch.device("cpu"))
        assert not event.hit and teacher.images_seen == seen + 20, split  # recomputed, not trusted
        assert torch.equal(got["pooled"], truth[split]["pooled"])
    assert sum("another key's values (split" in record.getMessage() for record in caplog.records) == 2
    assert len(list(cache.root.glob("*.corrupt-*"))) == 2  # moved aside once each, evidence kept
    _, event = cached_teacher_outputs(teacher, data, "val", ("pooled",), FeatureCache(tmp_path), torch.device("cpu"))
    assert event.hit  # the recomputed entry is trusted again


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_every_same_shape_entry_of_a_sweep_swapped_leaves_every_run_unchanged(tmp_path: Path) -> None:
    grid = tmp_path / "swapped.yaml"
    grid.write_text(GRID)
    cells = grid_cells(load_grid(grid))
    cache_dir = tmp_path / "cache"
    first = {spec.key: run_spec(spec, Workbench(RunContext(cache_dir=cache_dir, device="cpu")), "s") for spec in cells}
    groups = shape_groups(cache_dir / "features")
    assert sum(len(group) for group in groups) >= 3, groups  # train, val and test of a tap
    for group in groups:
        rotate(group)
    again = {spec.key: run_spec(spec, Workbench(RunContext(cache_dir=cache_dir, device="cpu")), "s")
             for spec in cells}
    for key, record in first.items():
        assert (again[key].test_acc, again[key].val_acc) == (record.test_acc, record.val_acc), record.method
    assert sum(record.cache_misses for record in again.values()) > 0  # the swapped entries were recomputed
    assert len(list((cache_dir / "features").glob("*.corrupt-*"))) == sum(len(group) for group in groups)
    assert not os.environ.get("BENCH_TRUST_CACHE")  # nothing switches the check off


@pytest.mark.parametrize("swap", ["arrays", "entries"])
def test_swapped_decoded_image_entries_are_decoded_again(tmp_path: Path, swap: str) -> None:
    """Two splits' decoded-image arrays (same shape) swapped, alone or with their commit markers: each split still
    gets its own pixels."""
    from bench.data.imagecache import cached_images
    from tests.support.dataset_fixtures import write_imagefolder

    paths = sorted(write_imagefolder(tmp_path / "imgs", per_class=4).rglob("*.jpg"))
    train, val = paths[:6], paths[6:]
    truth = {tag: np.asarray(cached_images(part, 16, tag, tmp_path / "cache").images).copy()
             for tag, part in (("t/train", train), ("t/val", val))}
    assert not np.array_equal(truth["t/train"], truth["t/val"])
    root = tmp_path / "cache" / "images"
    stems = sorted({path.stem for path in root.glob("*.npy")})
    suffixes = (".npy",) if swap == "arrays" else (".npy", ".json")
    for suffix in suffixes:
        first, second = (root / f"{stem}{suffix}" for stem in stems)
        body = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(body)
    for tag, part in (("t/train", train), ("t/val", val)):
        assert np.array_equal(np.asarray(cached_images(part, 16, tag, tmp_path / "cache").images), truth[tag]), tag
    assert len(list(root.glob("*.corrupt-*"))) == 4  # both pairs moved aside, once
