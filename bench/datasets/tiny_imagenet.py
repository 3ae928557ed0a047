"""`tiny-imagenet`: the official tiny-imagenet-200/ layout (train/<wnid>/images, val + annotations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.errors import BenchError
from bench.core.names import CLASSIFICATION
from bench.core.registries import DATASETS
from bench.data.imagecache import cached_images
from bench.data.splits import DataConfig, LoadContext, RawDataset
from bench.datasets.roots import find_root, require

NAME = "tiny-imagenet"
FOLDER = "tiny-imagenet-200"
NATIVE_SIZE = 64
LAYOUT = (
    "tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG, val/val_annotations.txt}"
)


def read_words(path: Path) -> dict[str, str]:
    """words.txt: `wnid<TAB>name, synonym, ...` -> wnid -> first name."""
    words = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, _, names = line.partition("\t")
        if wnid.strip():
            words[wnid.strip()] = names.split(",")[0].strip() or wnid.strip()
    return words


def train_files(root: Path, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every train image, class by class in wnids.txt order, with its class index."""
    paths: list[Path] = []
    labels: list[int] = []
    for index, wnid in enumerate(wnids):
        folder = require(root / "train" / wnid / "images", NAME, LAYOUT)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        paths += files
        labels += [index] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def val_files(root: Path, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    """The official val images (our test split) and their classes from val_annotations.txt."""
    annotations = require(root / "val" / "val_annotations.txt", NAME, LAYOUT)
    index_of = {wnid: i for i, wnid in enumerate(wnids)}
    paths, labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index_of:
            raise BenchError(f"{annotations}:{number}: expected 'FILE<TAB>WNID ...' with a wnid from wnids.txt")
        paths.append(require(root / "val" / "images" / fields[0], NAME, LAYOUT))
        labels.append(index_of[fields[1]])
    return paths, np.asarray(labels, dtype=np.int64)


@DATASETS.register(NAME, DatasetCard(CLASSIFICATION, image_size=64),
                   description="Tiny ImageNet (tiny-imagenet-200), 64x64, 200 classes; official val = test")
def load_tiny_imagenet(context: LoadContext, config: DataConfig) -> RawDataset:
    root = locate(context.data_root, config)
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()]
    words = read_words(require(root / "words.txt", NAME, LAYOUT))
    size = config.decode_size or NATIVE_SIZE
    train_paths, train_labels = train_files(root, wnids)
    test_paths, test_labels = val_files(root, wnids)
    if not train_paths:
        raise BenchError(f"{NAME}: no images under {root / 'train'}; expected {LAYOUT}")
    train = cached_images(train_paths, size, f"{NAME}/train", context.cache_dir, config.skip_bad)
    test = cached_images(test_paths, size, f"{NAME}/val", context.cache_dir, config.skip_bad)
    return RawDataset(
        train.images, train_labels[train.kept], test.images, test_labels[test.kept],
        tuple(words.get(w, w) for w in wnids), skipped_images=len(train.bad) + len(test.bad),
    )


def locate(data_root: Path | None, config: DataConfig) -> Path:
    """The dataset's root (what the loader reads), or one BenchError naming the layout; nothing is decoded."""
    return find_root(NAME, FOLDER, data_root, lambda p: (p / "wnids.txt").is_file(), LAYOUT)
