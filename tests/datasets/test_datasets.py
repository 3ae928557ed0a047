"""The official-layout loaders on miniature copies: classes, counts, RGB, bad data, the image cache."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.data.imagecache import cached_images
from bench.data.splits import DataConfig, LoadContext, load_dataset
from bench.datasets.cifar import load_cifar100, read_pickle
from bench.datasets.coco import load_coco_captions
from bench.datasets.imagefolder import load_imagefolder
from bench.datasets.tiny_imagenet import load_tiny_imagenet
from tests.support.dataset_fixtures import (
    COLOURS,
    corrupt_jpeg,
    write_cifar100,
    write_coco,
    write_imagefolder,
    write_tiny_imagenet,
)


@pytest.fixture
def no_bench_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setattr("bench.datasets.roots.USUAL_PLACES", (tmp_path / "usual",))


def test_tiny_imagenet_classes_counts_and_greyscale_to_rgb(tmp_path: Path, no_bench_data: None) -> None:
    write_tiny_imagenet(tmp_path / "data", num_classes=4, per_class=6, val_per_class=3)
    raw = load_tiny_imagenet(LoadContext(tmp_path / "data", tmp_path / "cache"), DataConfig())
    assert raw.class_names == ("red thing", "green thing", "blue thing", "yellow thing")  # words.txt, wnids order
    assert raw.train_images.shape == (24, 64, 64, 3) and raw.test_images.shape == (12, 64, 64, 3)
    assert list(raw.train_labels) == [c for c in range(4) for _ in range(6)]
    assert list(raw.test_labels) == [c for c in range(4) for _ in range(3)]
    grey = raw.train_images[6]  # first image of class 1 was saved greyscale
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    colour = raw.train_images[7].reshape(-1, 3).mean(axis=0)  # green image: green channel dominates
    assert colour[1] > colour[0] + 40 and colour[1] > colour[2] + 40
    colours = np.array(list(COLOURS.values())[:4], dtype=np.float64)
    for image, label in zip(raw.test_images, raw.test_labels, strict=True):  # val annotations give each class
        mean = image.reshape(-1, 3).mean(axis=0)
        ratios = colours / colours.sum(axis=1, keepdims=True)
        assert np.argmin(np.abs(ratios - mean / mean.sum()).sum(axis=1)) == label


def test_tiny_imagenet_missing_root_and_missing_file(tmp_path: Path, no_bench_data: None) -> None:
    with pytest.raises(BenchError, match=r"tiny-imagenet not found .*expected tiny-imagenet-200/\{wnids.txt"):
        load_tiny_imagenet(LoadContext(tmp_path / "nothing"), DataConfig())
    root = write_tiny_imagenet(tmp_path, num_classes=2, per_class=2, val_per_class=1)
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(BenchError, match=r"missing .*val_annotations.txt; expected"):
        load_tiny_imagenet(LoadContext(tmp_path, tmp_path / "cache"), DataConfig())


def test_tiny_imagenet_found_through_bench_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_imagenet(tmp_path / "store" / "tiny-imagenet", num_classes=2, per_class=2, val_per_class=1)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "store"))
    data = load_dataset("tiny-imagenet", DataConfig(val_fraction=0.5), cache_dir=tmp_path / "cache")
    assert data.sizes() == {"train": 2, "val": 2, "test": 2} and data.num_classes == 2  # val needs 2 images


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path: Path, no_bench_data: None) -> None:
    root = write_tiny_imagenet(tmp_path, num_classes=2, per_class=4, val_per_class=2)
    bad = root / "train" / "n01440001" / "images" / "n01440001_2.JPEG"
    corrupt_jpeg(bad)
    context = LoadContext(tmp_path, tmp_path / "cache")
    with pytest.raises(BenchError, match=rf"cannot decode image {bad} .*--skip-bad"):
        load_tiny_imagenet(context, DataConfig())
    raw = load_tiny_imagenet(context, DataConfig(skip_bad=True))
    assert raw.skipped_images == 1 and raw.train_images.shape[0] == 7
    assert list(raw.train_labels) == [0, 0, 0, 0, 1, 1, 1]
    splits = load_dataset("tiny-imagenet", DataConfig(skip_bad=True, split_seed=5, val_fraction=0.4), tmp_path,
                          cache_dir=tmp_path / "c2")  # 7 train images: val needs at least 2
    assert splits.skipped_images == 1 and splits.split_record()["split_seed"] == 5


def test_image_cache_second_pass_is_identical_and_does_not_decode(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_imagefolder(tmp_path / "imgs", per_class=4)
    paths = sorted(root.rglob("*.jpg"))
    first = cached_images(paths, 24, "t/train", tmp_path / "cache")
    assert first.images.shape == (12, 24, 24, 3) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap)

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr("bench.data.imagecache.decode_image", no_decoding)
    second = cached_images(paths, 24, "t/train", tmp_path / "cache")
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    assert not list((tmp_path / "cache" / "images").glob("*.tmp"))  # atomic writes leave no temp files
    os.utime(paths[0], ns=(1, 1))  # a changed file changes the fingerprint: decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        cached_images(paths, 24, "t/train", tmp_path / "cache")


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar100_fine_and_coarse_labels(tmp_path: Path, no_bench_data: None, bytes_keys: bool) -> None:
    root = write_cifar100(tmp_path, n_train=120, n_test=40, bytes_keys=bytes_keys)
    fine = load_cifar100(LoadContext(tmp_path), DataConfig())
    assert fine.train_images.shape == (120, 32, 32, 3) and fine.test_images.shape == (40, 32, 32, 3)
    assert len(fine.class_names) == 100 and fine.class_names[7] == "fine7" and fine.train_labels[107] == 7
    data = read_pickle(root / "train")["data"]
    assert fine.train_images[3, 0, 1, 2] == data[3, 2 * 1024 + 1]  # R, G, B planes of 32x32, row-major
    coarse = load_cifar100(LoadContext(tmp_path), DataConfig(label_set="coarse"))
    assert len(coarse.class_names) == 20 and coarse.train_labels[107] == 7 // 5
    with pytest.raises(BenchError, match="label_set 'medium'"):
        load_cifar100(LoadContext(tmp_path), DataConfig(label_set="medium"))


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_is_refused_without_running(tmp_path: Path, no_bench_data: None) -> None:
    root = write_cifar100(tmp_path, n_train=10, n_test=10)
    marker = tmp_path / "pwned"
    (root / "train").write_bytes(pickle.dumps({"data": Exploit(marker)}, protocol=2))
    with pytest.raises(BenchError, match=r"train is not a CIFAR pickle \(refused: global .*system"):
        load_cifar100(LoadContext(tmp_path), DataConfig())
    assert not marker.exists()


def test_cifar100_missing_says_layout(tmp_path: Path, no_bench_data: None) -> None:
    with pytest.raises(BenchError, match=r"cifar-100 not found .*cifar-100-python/\{train, test, meta\}"):
        load_cifar100(LoadContext(tmp_path), DataConfig())


def test_coco_official_split_keeps_every_caption(tmp_path: Path, no_bench_data: None) -> None:
    root, colour_of = write_coco(tmp_path, n_train=8, n_val=4)
    raw = load_coco_captions(LoadContext(tmp_path, tmp_path / "cache"), DataConfig(decode_size=24))
    assert list(raw.train_labels) == list(range(1, 9)) and list(raw.test_labels) == [9, 10, 11, 12]
    assert raw.train_images.shape == (8, 24, 24, 3)
    assert [len(c) for c in raw.train_captions] == [6] + [5] * 7 and len(raw.test_captions) == 4
    assert raw.train_captions[0][0] == "a green picture number 1" and raw.train_captions[0][5].startswith("an extra")
    assert all(colour_of[i] in caps[0] for i, caps in zip(raw.train_labels, raw.train_captions, strict=True))
    data = load_dataset("coco-captions", DataConfig(decode_size=24, val_fraction=0.25), tmp_path,
                        cache_dir=tmp_path / "cache")
    assert data.sizes() == {"train": 6, "val": 2, "test": 4}
    for split in (data.train, data.val):  # captions follow their images through the split
        assert all(f"number {i}" in caps[0] for i, caps in zip(split.labels, split.captions, strict=True))


def test_coco_karpathy_split_and_missing_annotations(tmp_path: Path, no_bench_data: None) -> None:
    root, _ = write_coco(tmp_path, n_train=8, n_val=4, karpathy_test=[2, 9, 11])
    raw = load_coco_captions(LoadContext(tmp_path, tmp_path / "cache"), DataConfig(decode_size=16))
    assert list(raw.test_labels) == [2, 9, 11] and sorted(raw.train_labels) == [1, 3, 4, 5, 6, 7, 8, 10, 12]
    (root / "annotations" / "captions_train2017.json").unlink()
    with pytest.raises(BenchError, match=r"missing .*captions_train2017.json; expected coco/"):
        load_coco_captions(LoadContext(tmp_path, tmp_path / "cache"), DataConfig(decode_size=16))


def test_imagefolder_classes_split_and_root(tmp_path: Path, no_bench_data: None) -> None:
    root = write_imagefolder(tmp_path / "pets", per_class=5)
    raw = load_imagefolder(LoadContext(None, tmp_path / "cache"), DataConfig(root=str(root), decode_size=20))
    assert raw.class_names == ("cat", "dog", "fish")
    assert raw.train_images.shape == (12, 20, 20, 3) and raw.test_images.shape == (3, 20, 20, 3)
    assert sorted(raw.test_labels) == [0, 1, 2]
    with pytest.raises(BenchError, match="imagefolder: name the root with data.root"):
        load_imagefolder(LoadContext(), DataConfig())
    with pytest.raises(BenchError, match=r"missing directory .*nope; expected ROOT/<class>/\*.jpg"):
        load_imagefolder(LoadContext(), DataConfig(root=str(tmp_path / "nope")))


def test_new_data_fields_keep_old_spec_keys() -> None:
    assert set(DataConfig().as_dict()) == {"image_size", "student_image_size", "train_limit", "val_limit",
                                           "test_limit", "val_fraction", "split_seed"}
    assert DataConfig(label_set="coarse").as_dict()["label_set"] == "coarse"
    assert DataConfig(**DataConfig(skip_bad=True, root="/x").as_dict()) == DataConfig(skip_bad=True, root="/x")
