"""Fashion-MNIST from its four IDX files (Debian's dataset-fashion-mnist, $BENCH_DATA or --data-root)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.errors import BenchError
from bench.core.names import CLASSIFICATION
from bench.core.registries import DATASETS
from bench.data.splits import DataConfig, LoadContext, RawDataset

FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise BenchError(f"cannot read IDX file {path}: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise BenchError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    num_dims = data[3]
    header_end = 4 + 4 * num_dims
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header_end != expected:
        raise BenchError(
            f"{path} is truncated: header says {shape} ({expected} bytes), file holds {len(data) - header_end}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def fashion_mnist_dirs(data_root: Path | None) -> list[Path]:
    """Where fashion-mnist is looked for, in order."""
    dirs: list[Path] = []
    if data_root is not None:
        dirs += [data_root / "fashion-mnist", data_root]
    if os.environ.get("BENCH_DATA"):
        bench_data = Path(os.environ["BENCH_DATA"])
        dirs += [bench_data / "fashion-mnist", bench_data]
    dirs.append(SYSTEM_FASHION_MNIST)
    return dirs


@DATASETS.register(
    "fashion-mnist", DatasetCard(CLASSIFICATION, image_size=28),
    description="Fashion-MNIST 28x28 greyscale, 10 classes (IDX files)",
)
def load_fashion_mnist(context: LoadContext, config: DataConfig) -> RawDataset:
    dirs = fashion_mnist_dirs(context.data_root)
    for directory in dirs:
        paths = {key: _find_idx(directory, stem) for key, stem in FASHION_MNIST_FILES.items()}
        if all(paths.values()):
            arrays = {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
            for split in ("train", "test"):
                if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
                    raise BenchError(f"fashion-mnist {split} images and labels differ in count in {directory}")
            return RawDataset(
                arrays["train_images"],
                arrays["train_labels"].astype(np.int64),
                arrays["test_images"],
                arrays["test_labels"].astype(np.int64),
                FASHION_MNIST_CLASSES,
            )
    looked = ", ".join(str(d) for d in dirs)
    raise BenchError(
        f"fashion-mnist not found (looked in {looked}); install Debian's dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist) or put the four IDX files "
        "(train-images-idx3-ubyte[.gz], ...) in $BENCH_DATA/fashion-mnist or --data-root"
    )


def locate(data_root: Path | None, config: DataConfig) -> Path:
    """The first directory holding the four IDX files (what the loader reads), or the loader's one-line error."""
    dirs = fashion_mnist_dirs(data_root)
    for directory in dirs:
        if all(_find_idx(directory, stem) for stem in FASHION_MNIST_FILES.values()):
            return directory
    raise BenchError(
        f"fashion-mnist not found (looked in {', '.join(str(d) for d in dirs)}); install Debian's "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or put the four IDX files "
        "(train-images-idx3-ubyte[.gz], ...) in $BENCH_DATA/fashion-mnist or --data-root"
    )
