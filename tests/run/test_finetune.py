"""Teacher fine-tuning: a tiny random timm model beats its frozen probe, runs once per key, keeps labels balanced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cache import FeatureCache
from bench.data import DataConfig, DatasetSplits, Split
from bench.features import run_teacher
from bench.probe import fit_linear_probe
from bench.registries import TEACHERS
from bench.run import finetune
from bench.run.finetune import FinetuneConfig, finetune_key, finetune_teacher, labeled_rows
from bench.teachers.base import Teacher
from bench.teachers.timm_vit import create_timm_model, register_timm_teacher

MODEL = "test_efficientnet"  # timm's tiny EfficientNet (256-d pooled), built with random weights
SIZE = 16
CONFIG = FinetuneConfig(lrs=(1e-2,), max_epochs=6, batch_size=32)


def faint_checkerboard(n: int, seed: int) -> Split:
    """Class 1 adds a faint checkerboard under strong pixel noise: random frozen features barely see it."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.integers(0, 200, size=(n, SIZE, SIZE)) + 24 * labels[:, None, None] * ((yy + xx) % 2)
    return Split(images.clip(0, 255).astype(np.uint8), labels.astype(np.int64))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Teacher]:
    """A registered timm teacher loaded from a random tiny checkpoint the test writes to disk."""
    from safetensors.torch import save_file

    path: Path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    source = create_timm_model(MODEL, None)
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, str(path))
    register_timm_teacher("tiny-finetune", MODEL, "tiny random EfficientNet")
    try:
        yield TEACHERS.get("tiny-finetune")(str(path))
    finally:
        TEACHERS.remove("tiny-finetune")


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return DatasetSplits("checker", ("plain", "checker"), faint_checkerboard(160, 0), faint_checkerboard(80, 1),
                         faint_checkerboard(80, 2), DataConfig(image_size=SIZE))


def frozen_probe_val_acc(teacher: Teacher, data: DatasetSplits) -> float:
    preprocess = teacher.preprocess.with_size(SIZE)
    splits = ("train", "val", "test")
    features = {s: run_teacher(teacher, data.split(s), preprocess, ["pooled"], torch.device("cpu"))["pooled"]
                for s in splits}
    labels = {s: torch.from_numpy(data.split(s).labels) for s in splits}
    return fit_linear_probe(features, labels, data.num_classes, targets="in-sample").val_acc


@pytest.mark.usefixtures("one_thread")
def test_finetune_beats_probe_and_is_cached(teacher: Teacher, data: DatasetSplits, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    calls = []
    real = finetune._train_one_lr
    monkeypatch.setattr(finetune, "_train_one_lr", lambda *args: calls.append(args[3]) or real(*args))
    cache = FeatureCache(tmp_path)
    first = finetune_teacher(teacher, data, CONFIG, cache, torch.device("cpu"))
    assert first.val_acc > frozen_probe_val_acc(teacher, data) + 0.1
    assert not first.hit and calls == [1e-2]
    assert first.logits["train"].shape == (160, 2) and first.pooled["test"].shape == (80, teacher.embed_dim)
    assert {"head.weight", "head.bias"} <= set(first.state) and 1 <= first.epochs <= CONFIG.max_epochs
    assert all(torch.equal(value, teacher.state_dict()[name]) for name, value in before.items())  # a private copy
    second = finetune_teacher(teacher, data, CONFIG, FeatureCache(tmp_path), torch.device("cpu"))
    assert second.hit and calls == [1e-2]  # read back, not trained again
    for split in ("train", "val", "test"):
        assert torch.equal(second.logits[split], first.logits[split])
    assert second.val_acc == first.val_acc and second.lr == first.lr and second.epochs == first.epochs


def test_key_follows_every_hyperparameter(teacher: Teacher, data: DatasetSplits) -> None:
    base = finetune_key(teacher, data, CONFIG)
    assert finetune_key(teacher, data, replace(CONFIG)) == base
    for change in ({"lrs": (3e-3,)}, {"max_epochs": 7}, {"unfreeze": 1}, {"seed": 1}, {"labeled_limit": 50},
                   {"weight_decay": 0.0}, {"batch_size": 16}):
        assert finetune_key(teacher, data, replace(CONFIG, **change)) != base, change
    other = replace(data, config=DataConfig(image_size=SIZE * 2))
    assert finetune_key(teacher, other, CONFIG) != base


def test_unfreeze_trains_only_the_last_blocks(teacher: Teacher, data: DatasetSplits, tmp_path: Path) -> None:
    config = replace(CONFIG, unfreeze=1, max_epochs=1)
    result = finetune_teacher(teacher, data, config, FeatureCache(tmp_path), torch.device("cpu"))
    last = len(teacher.encoder.blocks) - 1
    encoder = {name for name in result.state if name.startswith("encoder.")}
    assert encoder and all(not name.startswith("encoder.blocks.") or name.startswith(f"encoder.blocks.{last}.")
                           for name in encoder)
    assert not any(name.startswith(("encoder.conv_stem", "encoder.classifier")) for name in encoder)


def test_labeled_rows_are_a_balanced_seeded_prefix() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    rows = labeled_rows(labels, 8, seed=3)
    assert len(rows) == 8 and np.bincount(labels[rows], minlength=4).tolist() == [2, 2, 2, 2]
    assert set(rows) <= set(labeled_rows(labels, 20, seed=3))  # a larger limit keeps the smaller one's rows
    assert not np.array_equal(rows, labeled_rows(labels, 8, seed=4))
    assert np.array_equal(labeled_rows(labels, None), np.arange(100))
