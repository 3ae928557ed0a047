"""`imagefolder`: any root/<class>/*.jpg tree (classes = sorted sub-folders); a fixed 20% is the test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.errors import BenchError
from bench.core.names import CLASSIFICATION
from bench.core.registries import DATASETS
from bench.data.imagecache import cached_images
from bench.data.splits import DataConfig, LoadContext, RawDataset

NAME = "imagefolder"
DEFAULT_SIZE = 224
TEST_FRACTION = 0.2
TEST_SEED = 12345
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = "ROOT/<class>/*.jpg (one sub-folder per class; optional ROOT/train/<class> and ROOT/test/<class>)"


def scan(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image files under root/<class>/ (sorted) with class indices and the class names."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise BenchError(f"{NAME}: no images under {root}; expected {LAYOUT}")
    return paths, np.asarray(labels, dtype=np.int64), tuple(classes)


def _root(context: LoadContext, config: DataConfig) -> Path:
    if config.root:
        root = Path(config.root).expanduser()
    elif context.data_root is not None:
        root = Path(context.data_root)
    else:
        raise BenchError(f"{NAME}: name the root with data.root in the grid or --data-root; expected {LAYOUT}")
    if not root.is_dir():
        raise BenchError(f"{NAME}: missing directory {root}; expected {LAYOUT}")
    return root


def _test_mask(labels: np.ndarray) -> np.ndarray:
    """A fixed per-class TEST_FRACTION of the images (at least one per class with two or more)."""
    rng = np.random.default_rng(TEST_SEED)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        take = int(round(TEST_FRACTION * len(members))) or (1 if len(members) > 1 else 0)
        mask[members[:take]] = True
    return mask


@DATASETS.register(NAME, DatasetCard(CLASSIFICATION),
                   description="your own images: ROOT/<class>/*.jpg (data.root or --data-root)")
def load_imagefolder(context: LoadContext, config: DataConfig) -> RawDataset:
    root = _root(context, config)
    size = config.decode_size or config.image_size or DEFAULT_SIZE
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_paths, train_labels, names = scan(root / "train")
        test_paths, test_labels, test_names = scan(root / "test")
        if test_names != names:
            raise BenchError(f"{NAME}: {root / 'test'} has other class folders than {root / 'train'}")
    else:
        paths, labels, names = scan(root)
        mask = _test_mask(labels)
        train_paths, train_labels = [p for p, m in zip(paths, mask, strict=True) if not m], labels[~mask]
        test_paths, test_labels = [p for p, m in zip(paths, mask, strict=True) if m], labels[mask]
    train = cached_images(train_paths, size, f"{NAME}:{root}/train", context.cache_dir, config.skip_bad)
    test = cached_images(test_paths, size, f"{NAME}:{root}/test", context.cache_dir, config.skip_bad)
    return RawDataset(train.images, train_labels[train.kept], test.images, test_labels[test.kept], names,
                      skipped_images=len(train.bad) + len(test.bad))


def locate(data_root: Path | None, config: DataConfig) -> Path:
    """The dataset's root (what the loader reads), or one BenchError naming the layout; nothing is decoded."""
    return _root(LoadContext(data_root=data_root), config)
