"""Feature cache: computed once, reused, invalidated by anything that changes the outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cache import FeatureCache
from bench.data import DataConfig, load_dataset
from bench.features import cached_teacher_outputs
from teachers.base import Preprocess, Teacher


class CountingTeacher(Teacher):
    """A tiny deterministic conv teacher that counts how many images it has seen."""

    taps = ("pooled",)

    def __init__(self, fingerprint: str = "w1") -> None:
        torch.manual_seed(0)
        encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        super().__init__("counting", encoder, Preprocess(16, (0.5,) * 3, (0.5,) * 3), 8, fingerprint)
        self.images_seen = 0

    def features(self, images, taps):  # noqa: ANN001, ANN201
        self.images_seen += len(images)
        return {"pooled": self.encoder(images)}


@pytest.fixture
def data():
    return load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=30, image_size=16))


def lookup(teacher: Teacher, data, cache: FeatureCache, split: str = "train", taps=("pooled",)):  # noqa: ANN001, ANN201
    return cached_teacher_outputs(teacher, data, split, taps, cache, torch.device("cpu"))


def test_second_lookup_hits_and_returns_identical_tensors(tmp_path: Path, data) -> None:
    teacher = CountingTeacher()
    cache = FeatureCache(tmp_path)
    first, event1 = lookup(teacher, data, cache)
    assert not event1.hit and teacher.images_seen == 50 and first["pooled"].shape == (50, 8)
    second, event2 = lookup(teacher, data, FeatureCache(tmp_path))  # a new process, same dir
    assert event2.hit and teacher.images_seen == 50
    assert torch.equal(first["pooled"], second["pooled"])
    assert event2.teacher_seconds == pytest.approx(event1.teacher_seconds, rel=1e-3)
    assert cache.misses == 1 and not list(cache.root.glob("*.tmp"))


@pytest.mark.parametrize(
    "change",
    ["weights", "image_size", "split", "data_limit"],
)
def test_anything_that_changes_outputs_invalidates(tmp_path: Path, data, change: str) -> None:
    cache = FeatureCache(tmp_path)
    lookup(CountingTeacher(), data, cache)
    teacher, split = CountingTeacher(), "train"
    if change == "weights":
        teacher = CountingTeacher(fingerprint="w2")
    elif change == "image_size":
        data = load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=30, image_size=24))
    elif change == "split":
        split = "val"
    elif change == "data_limit":
        data = load_dataset("digits", DataConfig(train_limit=40, val_limit=20, test_limit=30, image_size=16))
    _, event = lookup(teacher, data, cache, split)
    assert not event.hit and teacher.images_seen > 0


def test_limits_on_other_splits_do_not_invalidate(tmp_path: Path, data) -> None:
    cache = FeatureCache(tmp_path)
    lookup(CountingTeacher(), data, cache)
    other = load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=10, image_size=16,
                                               student_image_size=8))
    teacher = CountingTeacher()
    _, event = lookup(teacher, other, cache)
    assert event.hit and teacher.images_seen == 0


def test_damaged_cache_file_is_recomputed(tmp_path: Path, data) -> None:
    cache = FeatureCache(tmp_path)
    original, _ = lookup(CountingTeacher(), data, cache)
    for path in cache.root.glob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:100])
    teacher = CountingTeacher()
    again, event = lookup(teacher, data, cache)
    assert not event.hit and teacher.images_seen == 50
    assert torch.allclose(original["pooled"], again["pooled"])
