"""Splits are index views of the decoded-image memmap: same pixels as the copies they replace, no copy held."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import images as images_module
from bench.data.imagecache import ImageView
from bench.data.images import channel_stats
from bench.data.splits import DataConfig, LoadContext, load_dataset
from bench.datasets.imagefolder import load_imagefolder
from tests.support.dataset_fixtures import corrupt_jpeg, write_imagefolder

CONFIG = DataConfig(val_fraction=0.25, split_seed=3, train_limit=9, test_limit=4, decode_size=16)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    return write_imagefolder(tmp_path / "imgs", per_class=8), tmp_path / "cache"


def copied_splits(raw_train: np.ndarray, raw_test: np.ndarray, config: DataConfig) -> dict[str, np.ndarray]:
    """The splits as make_splits carved them before views: fancy-indexed copies of the raw arrays."""
    order = np.random.default_rng(config.split_seed).permutation(len(raw_train))
    num_val = max(1, int(round(config.val_fraction * len(order))))
    test_order = np.random.default_rng(config.split_seed + 1).permutation(len(raw_test))
    return {"val": raw_train[order[:num_val][: config.val_limit]],
            "train": raw_train[order[num_val:][: config.train_limit]],
            "test": raw_test[np.sort(test_order[: config.test_limit])]}


def test_imagefolder_splits_are_views_of_the_memmap_with_the_copies_pixels(folder: tuple[Path, Path]) -> None:
    root, cache = folder
    data = load_dataset("imagefolder", CONFIG, root, cache_dir=cache)
    raw = load_imagefolder(LoadContext(root, cache), CONFIG)
    expected = copied_splits(np.array(raw.train_images), np.array(raw.test_images), CONFIG)  # copies in RAM
    for name, pixels in expected.items():
        view = data.split(name).images
        assert isinstance(view, ImageView) and isinstance(view.base, np.memmap)
        assert Path(view.base.filename).parent == cache / "images"
        assert view.shape == pixels.shape and view.dtype == np.uint8 and len(view) == len(pixels)
        assert np.array_equal(np.asarray(view), pixels)
        picks = np.array([len(pixels) - 1, 0, 1])
        assert np.array_equal(view[picks], pixels[picks]) and np.array_equal(view[1:3], pixels[1:3])
        assert type(view[picks]) is np.ndarray and not np.shares_memory(view[picks], view.base)
        assert np.array_equal(view[2], pixels[2]) and np.array_equal(np.stack(list(view)), pixels)
        assert np.array_equal(view.take(picks)[1:], pixels[picks][1:])  # a view of a view reads the same rows


def test_splits_hold_no_pixels_of_their_own() -> None:
    data = load_dataset("digits", DataConfig(train_limit=100, val_limit=20, test_limit=30))
    assert data.train.images.base is data.val.images.base  # both read the one raw train array
    for name in ("train", "val", "test"):
        view = data.split(name).images
        held = [value for value in vars(view).values() if isinstance(value, np.ndarray) and value.dtype == np.uint8]
        assert len(held) == 1 and held[0] is view.base and len(view.base) > len(view)
        assert view.rows is not None and view.rows.dtype == np.int64 and len(view.rows) == len(view)


def test_skipped_bad_images_are_a_view_not_a_copy(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "imgs", per_class=6)
    corrupt_jpeg(root / "dog" / "002.jpg")
    data = load_dataset("imagefolder", DataConfig(skip_bad=True, decode_size=16, val_fraction=0.3), root,
                        cache_dir=tmp_path / "c")  # a few images: val needs at least 2
    assert data.skipped_images == 1
    for name in ("train", "val", "test"):
        view = data.split(name).images
        assert isinstance(view, ImageView) and isinstance(view.base, np.memmap)


@pytest.mark.parametrize("greyscale", [False, True])
def test_streamed_channel_stats_match_the_whole_array_in_float64(monkeypatch: pytest.MonkeyPatch,
                                                                 greyscale: bool) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(301, 20, 20) if greyscale else (301, 20, 20, 3), dtype=np.uint8)
    pixels[:150] //= 3  # two populations: the mean is not 127.5
    view = ImageView(pixels, rng.permutation(301)[:257])
    truth = np.asarray(view).astype(np.float64) / 255.0
    axes = (0, 1, 2) if not greyscale else None
    want_mean, want_std = truth.mean(axis=axes), truth.std(axis=axes) + 1e-6
    monkeypatch.setattr(images_module, "WHOLE_STATS_BYTES", 0)  # force the streamed path
    monkeypatch.setattr(images_module, "STATS_CHUNK_BYTES", 3 * pixels[0].nbytes)  # many chunks, a ragged last
    mean, std = channel_stats(view)
    assert np.allclose(mean, np.broadcast_to(want_mean, 3), atol=1e-6, rtol=0)
    assert np.allclose(std, np.broadcast_to(want_std, 3), atol=1e-6, rtol=0)


def test_small_arrays_keep_the_earlier_float32_channel_stats_bit_for_bit() -> None:
    """Existing runs keep their normalisation: below the streaming size the values are the old formula's."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(64, 20, 20, 3), dtype=np.uint8)
    view = ImageView(pixels, np.arange(63, -1, -2))
    floats = np.asarray(view).astype(np.float32) / 255.0
    old = (tuple(float(v) for v in floats.mean(axis=(0, 1, 2))),
           tuple(float(v) for v in floats.std(axis=(0, 1, 2)) + 1e-6))
    assert channel_stats(view) == old


@pytest.mark.parametrize(("shape", "size", "interpolation"), [((37, 12, 12, 3), 20, "bicubic"),
                                                              ((37, 12, 12), 8, "bilinear"),
                                                              ((37, 12, 12, 3), 12, "bilinear")])
def test_to_tensor_in_chunks_gives_the_whole_conversion(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...],
                                                         size: int, interpolation: str) -> None:
    """A large array (or view) is converted a bounded chunk at a time into one result, bit for bit the same."""
    pixels = np.random.default_rng(2).integers(0, 256, size=shape, dtype=np.uint8)
    view = ImageView(pixels, np.arange(36, -1, -1))
    whole = images_module.to_tensor(view, size, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25), interpolation)
    read: list[int] = []
    real = images_module._to_tensor
    monkeypatch.setattr(images_module, "_to_tensor", lambda images, *a: read.append(len(images)) or real(images, *a))
    monkeypatch.setattr(images_module, "TO_TENSOR_CHUNK_PIXELS", 5 * 12 * 12)
    chunked = images_module.to_tensor(view, size, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25), interpolation)
    assert read == [5] * 7 + [2] and chunked.shape == (37, 3, size, size) and chunked.is_contiguous()
    assert torch.equal(chunked, whole)
