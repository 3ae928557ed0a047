"""`coco-captions`: MS COCO 2017 captions (annotations/captions_*2017.json + train2017/, val2017/).

Splits: with a Karpathy split file (dataset_coco.json) its `test` images (5k) are the test split and
`train` + `restval` the train pool (its `val` is unused; val is carved from train like every dataset);
without it, train2017 is the train pool and all of val2017 (5k images) the test split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.errors import BenchError
from bench.core.names import RETRIEVAL
from bench.core.registries import DATASETS
from bench.data.imagecache import cached_images
from bench.data.splits import DataConfig, LoadContext, RawDataset
from bench.datasets.roots import find_root, require

NAME = "coco-captions"
FOLDER = "coco"
DEFAULT_SIZE = 224
LAYOUT = ("coco/{annotations/captions_train2017.json, annotations/captions_val2017.json, train2017/*.jpg, "
          "val2017/*.jpg} (optional: dataset_coco.json, the Karpathy split)")
KARPATHY_PLACES = ("dataset_coco.json", "annotations/dataset_coco.json", "karpathy/dataset_coco.json")
KARPATHY_FIX = ("unzip caption_datasets.zip from Karpathy's split page "
                "(https://cs.stanford.edu/people/karpathy/deepimagesent/)")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BenchError(f"cannot read {path}: {error}") from None


def read_captions(root: Path, split: str) -> dict[int, tuple[Path, list[str]]]:
    """image id -> (image file, every caption in annotation-id order) for one official split."""
    path = require(root / "annotations" / f"captions_{split}2017.json", NAME, LAYOUT)
    data = read_json(path)
    try:
        files = {int(image["id"]): root / f"{split}2017" / image["file_name"] for image in data["images"]}
        annotations = sorted(data["annotations"], key=lambda a: int(a.get("id", 0)))
        captions: dict[int, list[str]] = {}
        for annotation in annotations:
            captions.setdefault(int(annotation["image_id"]), []).append(" ".join(annotation["caption"].split()))
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"{path}: not a COCO captions file (missing {error}); expected {LAYOUT}") from None
    return {image_id: (files[image_id], captions[image_id]) for image_id in sorted(captions) if image_id in files}


def karpathy_test_ids(root: Path) -> tuple[set[int], set[int]] | None:
    """(train-pool ids, test ids) from the Karpathy split file, when there is one."""
    path = karpathy_file(root)
    if path is None:
        return None
    images = read_json(path).get("images", [])
    test = {int(i["cocoid"]) for i in images if i.get("split") == "test"}
    train = {int(i["cocoid"]) for i in images if i.get("split") in ("train", "restval")}
    return train, test


def _pools(root: Path) -> tuple[dict[int, tuple[Path, list[str]]], dict[int, tuple[Path, list[str]]]]:
    official = {split: read_captions(root, split) for split in ("train", "val")}
    karpathy = karpathy_test_ids(root)
    if karpathy is None:
        return official["train"], official["val"]
    everything = {**official["train"], **official["val"]}
    train_ids, test_ids = karpathy
    pick = lambda ids: {i: everything[i] for i in sorted(ids) if i in everything}  # noqa: E731
    return pick(train_ids), pick(test_ids)


def _decode(pool: dict[int, tuple[Path, list[str]]], size: int, tag: str, context: LoadContext,
            config: DataConfig) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, ...], ...], int]:
    ids = list(pool)
    decoded = cached_images([pool[i][0] for i in ids], size, tag, context.cache_dir, config.skip_bad)
    kept_ids = [ids[int(k)] for k in decoded.kept]
    captions = tuple(tuple(pool[i][1]) for i in kept_ids)
    return decoded.images, np.asarray(kept_ids, dtype=np.int64), captions, len(decoded.bad)


@DATASETS.register(NAME, DatasetCard(RETRIEVAL),
                   description="MS COCO 2017 captions: image-text retrieval, all ~5 captions per image")
def load_coco_captions(context: LoadContext, config: DataConfig) -> RawDataset:
    root = locate(context.data_root, config)
    train_pool, test_pool = _pools(root)
    if not train_pool or not test_pool:
        raise BenchError(f"{NAME}: no captioned images in the train or test split under {root}; expected {LAYOUT}")
    size = config.decode_size or config.image_size or DEFAULT_SIZE
    train_images, train_ids, train_captions, train_bad = _decode(train_pool, size, f"{NAME}/train", context, config)
    test_images, test_ids, test_captions, test_bad = _decode(test_pool, size, f"{NAME}/test", context, config)
    return RawDataset(train_images, train_ids, test_images, test_ids, (), train_captions, test_captions,
                      skipped_images=train_bad + test_bad)


def karpathy_file(root: Path) -> Path | None:
    """Where the Karpathy split file lies under the root, if anywhere."""
    return next((root / place for place in KARPATHY_PLACES if (root / place).is_file()), None)


def locate(data_root: Path | None, config: DataConfig) -> Path:
    """The dataset's root (what the loader reads), or one BenchError naming the layout; nothing is decoded.

    With `coco_split: karpathy` the Karpathy split file is required: without it the test split would be val2017,
    most of which lies in the Karpathy restval that COCO-fine-tuned teachers (blip-base) trained on.
    """
    is_root = lambda p: (p / "annotations" / "captions_val2017.json").is_file()  # noqa: E731
    root = find_root(NAME, FOLDER, data_root, is_root, LAYOUT)
    if config.coco_split == "karpathy" and karpathy_file(root) is None:
        raise BenchError(f"{NAME}: data.coco_split karpathy needs the Karpathy split file {root / KARPATHY_PLACES[0]} "
                         f"(without it the test split is val2017, mostly Karpathy restval); fix: {KARPATHY_FIX} and "
                         f"put dataset_coco.json in {root}/")
    return root
