"""`cifar-100`: the official cifar-100-python/ pickles, read by an unpickler that only builds the format."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.errors import BenchError
from bench.core.names import CLASSIFICATION
from bench.core.registries import DATASETS
from bench.data.splits import DataConfig, LoadContext, RawDataset
from bench.datasets.roots import candidate_roots, find_root, require

NAME = "cifar-100"
FOLDER = "cifar-100-python"
LAYOUT = "cifar-100-python/{train, test, meta} (the official Python pickles)"
LABEL_SETS = {"fine": ("fine_labels", "fine_label_names"), "coarse": ("coarse_labels", "coarse_label_names")}
# The only globals the official files (and numpy re-pickles of them) need: array reconstruction.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class FormatUnpickler(pickle.Unpickler):
    """Refuses every global outside ALLOWED_GLOBALS, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of the CIFAR format")
        return super().find_class(module, name)


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in value.items()}
    return value


def read_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with str keys (Python 2 files included); refuses foreign globals."""
    try:
        data = FormatUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise BenchError(f"{path} is not a CIFAR pickle (refused: {error})") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path} is not a CIFAR pickle (holds {type(data).__name__}, expected a dict)")
    return _str_keys(data)


def _field(data: dict[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise BenchError(f"{path}: missing field {key!r}; expected {LAYOUT}")
    return data[key]


def _images(data: dict[str, Any], path: Path) -> np.ndarray:
    raw = np.asarray(_field(data, "data", path), dtype=np.uint8)
    if raw.ndim != 2 or raw.shape[1] != 3 * 32 * 32:
        raise BenchError(f"{path}: field 'data' has shape {raw.shape}, expected (N, 3072)")
    return np.ascontiguousarray(raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _is_root(path: Path) -> bool:
    return (path / "meta").is_file() and (path / "train").is_file()


def _download(context: LoadContext) -> None:
    """torchvision's CIFAR100 download into --data-root (only with --allow-download)."""
    target = context.data_root or candidate_roots(NAME, FOLDER, None)[0].parent
    from torchvision.datasets import CIFAR100

    CIFAR100(str(target), train=True, download=True)


@DATASETS.register(NAME, DatasetCard(CLASSIFICATION, image_size=32),
                   description="CIFAR-100 (cifar-100-python pickles), 32x32, 100 fine or 20 coarse classes")
def load_cifar100(context: LoadContext, config: DataConfig) -> RawDataset:
    if config.label_set not in LABEL_SETS:
        raise BenchError(f"data.label_set {config.label_set!r}: use 'fine' or 'coarse'")
    is_root = _is_root
    try:
        root = find_root(NAME, FOLDER, context.data_root, is_root, LAYOUT)
    except BenchError as error:
        if not context.allow_download:
            raise BenchError(f"{error}, or pass --allow-download to fetch it with torchvision") from None
        _download(context)
        root = find_root(NAME, FOLDER, context.data_root, is_root, LAYOUT)
    label_key, names_key = LABEL_SETS[config.label_set]
    meta_path = root / "meta"
    names = tuple(str(n) for n in _field(read_pickle(meta_path), names_key, meta_path))
    splits = {}
    for split in ("train", "test"):
        path = require(root / split, NAME, LAYOUT)
        data = read_pickle(path)
        images = _images(data, path)
        labels = np.asarray(_field(data, label_key, path), dtype=np.int64)
        if len(labels) != len(images) or (len(labels) and (labels.min() < 0 or labels.max() >= len(names))):
            raise BenchError(f"{path}: {label_key} do not match the images or the {len(names)} class names")
        splits[split] = (images, labels)
    return RawDataset(*splits["train"], *splits["test"], names)


def locate(data_root: Path | None, config: DataConfig) -> Path:
    """The dataset's root (what the loader reads), or one BenchError naming the layout; nothing is read."""
    return find_root(NAME, FOLDER, data_root, _is_root, LAYOUT)
