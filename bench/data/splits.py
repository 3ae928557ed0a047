"""Datasets: official train/test splits, a val split carved from train, optional size limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import BenchError
from bench.core.knobs import SEED_MAX, Knob
from bench.core.registries import DATASETS
from bench.data.imagecache import ImageView


@dataclass(frozen=True)
class RawDataset:
    """A dataset's official splits as uint8 images (N, H, W) or (N, H, W, 3) and int labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    train_captions: tuple[tuple[str, ...], ...] | None = None  # image-text datasets: captions per image
    test_captions: tuple[tuple[str, ...], ...] | None = None
    skipped_images: int = 0  # corrupt images left out under skip_bad


_SIZE = {"type": int, "ge": 8, "le": 4096, "optional": True}
_LIMIT = {"type": int, "ge": 1, "le": 10**9, "optional": True}


def data_field(default: object, *args: object, keyed_at_default: bool = True, **rules: object) -> Any:
    """A DataConfig field declared once: its Knob (default, type, valid values, help) rides in the field metadata.

    keyed_at_default=False: a field added after the first spec keys; left out of the spec at its default so those
    keys hold.
    """
    knob = Knob(default, *args, **rules)  # type: ignore[arg-type]
    return field(default=default, metadata={"knob": knob, "keyed_at_default": keyed_at_default})


@dataclass(frozen=True)
class DataConfig:
    """How a run sees its dataset; part of the spec (changing it changes the spec key). Each field is declared once."""

    image_size: int | None = data_field(None, **_SIZE, help="teacher input size; null: the teacher's native size")
    student_image_size: int | None = data_field(None, **_SIZE,
                                                help="standalone students' input size; null: the dataset's")
    train_limit: int | None = data_field(None, **_LIMIT, help="at most this many train images; null: all")
    val_limit: int | None = data_field(None, **_LIMIT, help="at most this many val images; null: all")
    test_limit: int | None = data_field(None, **_LIMIT, help="at most this many test images; null: all")
    val_fraction: float = data_field(0.1, float, ge=0.01, lt=1, help="share of train carved out as val")
    split_seed: int = data_field(0, int, ge=0, le=SEED_MAX - 1, help="seed of the val split and the test subset")
    decode_size: int | None = data_field(None, **_SIZE, keyed_at_default=False,
                                         help="decoded-image cache size for JPEG datasets; null: dataset default")
    skip_bad: bool = data_field(False, bool, keyed_at_default=False,
                                help="leave corrupt images out (counted in the run) instead of failing")
    label_set: str = data_field("fine", str, choices=("fine", "coarse"), keyed_at_default=False,
                                help="cifar-100: fine (100 classes) or coarse (20 superclasses)")
    root: str | None = data_field(None, str, optional=True, keyed_at_default=False,
                                  help="imagefolder: the root/<class>/*.jpg directory")
    teacher_reference: str = data_field("probe", str, choices=("probe", "zero-shot", "finetune"),
                                        keyed_at_default=False,
                                        help="probe (linear probe), zero-shot (image-text teachers' prompts) or "
                                             "finetune (the teacher trained on the labeled train rows)")
    kd_targets: str = data_field("oof", str, choices=("oof", "in-sample"), keyed_at_default=False,
                                 help="probe train logits for KD: oof (out-of-fold) or in-sample (for comparison)")
    finetune_unfreeze: int | str = data_field("all", object, keyed_at_default=False,
                                              help="teacher_reference finetune: 'all' or the last N blocks train")
    finetune_epochs: int = data_field(6, int, ge=1, le=1000, keyed_at_default=False,
                                      help="teacher_reference finetune: epochs (the best on val is kept)")
    finetune_lr: float = data_field(1e-3, float, gt=0, le=1, keyed_at_default=False,
                                    help="teacher_reference finetune: AdamW learning rate")
    labeled_limit: int | None = data_field(None, **_LIMIT, keyed_at_default=False,
                                           help="train rows that keep their label (class-balanced, labeled_seed); "
                                                "the rest are a transfer set; null: all")
    labeled_seed: int | None = data_field(None, int, ge=0, le=SEED_MAX - 1, optional=True, keyed_at_default=False,
                                          help="labeled_limit: seed of which train rows keep their label; null: "
                                               "split_seed (a report averages over it like the student seed)")
    precision: str = data_field("fp32", str, choices=("fp32", "bf16"), keyed_at_default=False,
                                help="student training: fp32, or bf16 autocast (fp32 master weights; changes results)")
    channels_last: str = data_field("auto", str, choices=("auto", "on", "off"), keyed_at_default=False,
                                    help="conv students in channels_last memory format; auto: on CUDA (speed only)")
    compile: bool = data_field(False, bool, keyed_at_default=False,
                               help="torch.compile the student's training forward (speed only)")
    loader_workers: int | None = data_field(None, int, ge=0, le=64, optional=True, keyed_at_default=False,
                                            help="image students' DataLoader workers; null: 0 on CPU, some on CUDA")
    resident_features: str = data_field("auto", str, choices=("auto", "off"), keyed_at_default=False,
                                        help="cached teacher outputs on the GPU once when they fit (speed only)")
    budget: str = data_field("epochs", str, choices=("epochs", "steps"), keyed_at_default=False,
                             help="epochs: an epoch is a pass over the method's own train rows (scratch under "
                                  "labeled_limit sees only its labels); steps: every method of a setting takes the "
                                  "optimizer steps of a pass over the whole train split per epoch (compute-matched)")
    finetune_budget: str = data_field("epochs", str, choices=("epochs", "steps"), keyed_at_default=False,
                                      help="teacher_reference finetune: epochs over its labeled rows, or steps: "
                                           "each epoch takes the steps of a pass over the whole train split")
    coco_split: str = data_field("auto", str, choices=("auto", "karpathy"), keyed_at_default=False,
                                 help="coco-captions: auto (the Karpathy split when dataset_coco.json is there, else "
                                      "val2017 as test) or karpathy (required: refused without the file)")
    augment: str = data_field("none", str, choices=("none", "flip", "crop-flip", "crop-pad-flip", "mixup"),
                              keyed_at_default=False,
                              help="train augmentation (seeded); mixup: crop-flip, then each image mixed with a "
                                   "seeded partner (ratio ~ U(0, 1)); which teacher targets go with it: "
                                   "teacher_views")
    teacher_views: str = data_field("fixed", str, choices=("fixed", "cached", "online"), keyed_at_default=False,
                                    help="fixed: teacher outputs of the un-augmented image; cached: of "
                                         "teacher_view_count seeded views per image, replayed to the student; "
                                         "online: the teacher runs on every augmented batch")
    teacher_view_count: int = data_field(8, int, ge=1, le=1024, keyed_at_default=False,
                                         help="teacher_views cached: views (K) per train image, view "
                                              "(epoch - 1) mod K in epoch epoch")
    teacher_view_seed: int = data_field(0, int, ge=0, le=SEED_MAX - 1, keyed_at_default=False,
                                        help="teacher_views cached: seed of the views (the same across runs, "
                                             "seeds and processes)")
    teacher_view_topk: int | None = data_field(None, int, ge=1, le=10**6, optional=True, keyed_at_default=False,
                                               help="teacher_views cached: keep the top-k logits per view (the "
                                                    "others become -inf: softmax renormalises over the k); "
                                                    "null: all")

    def label_seed(self) -> int:
        """The seed that picks the labeled rows (labeled_limit): labeled_seed, or split_seed when it is not set."""
        return self.split_seed if self.labeled_seed is None else self.labeled_seed

    def as_dict(self) -> dict[str, object]:
        """Fields as a dict; the fields added later are left out at their defaults so older spec keys hold."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in UNKEYED_DEFAULTS or v != UNKEYED_DEFAULTS[k]}


DATA_KNOBS: dict[str, Knob] = {f.name: f.metadata["knob"] for f in fields(DataConfig)}  # grid/study `data:` checks
UNKEYED_DEFAULTS: dict[str, object] = {  # fields left out of the spec at these defaults (older keys hold)
    f.name: f.default for f in fields(DataConfig) if not f.metadata["keyed_at_default"]}


TRAINING_ONLY: dict[str, object] = {  # fields that change how a run trains, not the images: reset when loading
    name: UNKEYED_DEFAULTS[name] for name in ("teacher_reference", "kd_targets", "finetune_unfreeze",
                                              "finetune_epochs", "finetune_lr", "labeled_limit", "labeled_seed",
                                              "precision",
                                              "channels_last", "compile", "loader_workers", "resident_features",
                                              "augment", "budget", "finetune_budget", "teacher_views",
                                              "teacher_view_count", "teacher_view_seed", "teacher_view_topk")}


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (an ImageView of the dataset's array: rows read when indexed) and int64 labels."""

    images: np.ndarray | ImageView
    labels: np.ndarray
    captions: tuple[tuple[str, ...], ...] | None = None  # image-text datasets: all captions of each image

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DatasetSplits:
    """train / val / test of one dataset under one DataConfig."""

    name: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    config: DataConfig
    skipped_images: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def native_size(self) -> int:
        return int(self.train.images.shape[1])

    @cached_property
    def train_channel_stats(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per-channel mean and std of the train images (standalone students' normalisation), computed once: it
        reads the whole split, and the run, its artifact and its inference cost all need it."""
        from bench.data.images import (
            channel_stats,  # torch: not at import (the CLI's torch-free paths import this module)
        )

        return channel_stats(self.train.images)

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def split_record(self) -> dict[str, object]:
        """Split sizes and seed as stored with every run."""
        return {**self.sizes(), "split_seed": self.config.split_seed, "val_fraction": self.config.val_fraction}


@dataclass(frozen=True)
class LoadContext:
    """Where a loader looks and what it may do: roots, the decoded-image cache, downloads."""

    data_root: Path | None = None
    cache_dir: Path | None = None
    allow_download: bool = False


DatasetLoader = Callable[[LoadContext, "DataConfig"], RawDataset]  # every registered dataset loader


def _take(split: Split, indices: np.ndarray) -> Split:
    """The rows `indices` of a split: a view of its images (no pixels copied), its labels and captions."""
    captions = None if split.captions is None else tuple(split.captions[int(i)] for i in indices)
    return Split(ImageView(split.images, indices), split.labels[indices], captions)


def make_splits(name: str, raw: RawDataset, config: DataConfig) -> DatasetSplits:
    """Carve val from train with `split_seed`, then apply the per-split size limits."""
    if not 0.0 < config.val_fraction < 1.0:
        raise BenchError(f"data.val_fraction must be in (0, 1), got {config.val_fraction}")
    rng = np.random.default_rng(config.split_seed)
    order = rng.permutation(len(raw.train_labels))
    num_val = max(1, int(round(config.val_fraction * len(order))))
    full_train = Split(raw.train_images, raw.train_labels, raw.train_captions)
    val = _take(full_train, order[:num_val][: config.val_limit])
    train = _take(full_train, order[num_val:][: config.train_limit])
    test_order = np.random.default_rng(config.split_seed + 1).permutation(len(raw.test_labels))
    test_split = Split(raw.test_images, raw.test_labels, raw.test_captions)
    test = _take(test_split, np.sort(test_order[: config.test_limit]))
    _check_split_sizes(name, len(raw.class_names), len(train.labels), len(val.labels), config)
    return DatasetSplits(name, raw.class_names, train, val, test, config, raw.skipped_images)


MIN_VAL_IMAGES = 2  # one val image makes val accuracy (what a search optimises) 0 or 1


def _check_split_sizes(name: str, classes: int, train: int, val: int, config: DataConfig) -> None:
    """Refuse splits a run would train or score on nothing: empty or tiny val, fewer train images than classes."""
    if val < MIN_VAL_IMAGES:
        raise BenchError(f"dataset {name!r}: data.val_fraction {config.val_fraction:g} (val_limit "
                         f"{config.val_limit}) leaves {val} val image(s); the val split needs at least "
                         f"{MIN_VAL_IMAGES}: raise val_fraction or val_limit")
    if classes and train < classes:
        raise BenchError(f"dataset {name!r}: data.train_limit {config.train_limit} leaves {train} train image(s) "
                         f"for {classes} classes; give at least {classes}")
    if config.labeled_limit is not None and classes and not classes <= config.labeled_limit <= train:
        raise BenchError(f"dataset {name!r}: data.labeled_limit {config.labeled_limit} must lie in "
                         f"[{classes}, {train}] (one label per class at least, at most the train images)")


_RAW_CACHE: dict[tuple, RawDataset] = {}


def load_dataset(name: str, config: DataConfig, data_root: Path | None = None, *,
                 cache_dir: Path | None = None, allow_download: bool = False) -> DatasetSplits:
    """Load a registered dataset (memoised per process) and split it under `config`."""
    entry = DATASETS.entry(name)
    loading = replace(config, train_limit=None, val_limit=None, test_limit=None, val_fraction=0.1,
                      split_seed=0, student_image_size=None, **TRAINING_ONLY)
    cache_key = (name, str(data_root), str(cache_dir), allow_download, loading)
    if cache_key not in _RAW_CACHE:
        _RAW_CACHE[cache_key] = entry.obj(LoadContext(data_root, cache_dir, allow_download), config)
    return make_splits(name, _RAW_CACHE[cache_key], config)
