from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.data.images import to_tensor
from bench.data.splits import DataConfig, LoadContext, load_dataset
from bench.datasets.fashion_mnist import SYSTEM_FASHION_MNIST, load_fashion_mnist, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(directory: Path, n_train: int = 30, n_test: int = 10, compress: bool = True) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)


def test_digits_splits_are_deterministic_disjoint_and_limited() -> None:
    config = DataConfig(train_limit=500, val_limit=100, test_limit=200, split_seed=3)
    a, b = load_dataset("digits", config), load_dataset("digits", config)
    assert a.sizes() == {"train": 500, "val": 100, "test": 200}
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(a.val.labels, b.val.labels)
    full = load_dataset("digits", DataConfig())
    assert sum(full.sizes().values()) == 1797
    rows = {split: {img.tobytes() for img in full.split(split).images} for split in ("train", "val", "test")}
    # sklearn digits holds a few exact duplicate images; splits must share at most those
    assert len(rows["train"] & rows["test"]) <= 5 and len(rows["train"] & rows["val"]) <= 5
    other_seed = load_dataset("digits", DataConfig(train_limit=500, split_seed=4))
    assert not np.array_equal(other_seed.train.labels, a.train.labels)
    assert a.train.images.dtype == np.uint8 and np.asarray(a.train.images).max() == 255
    assert set(np.unique(a.train.labels)) == set(range(10)) and a.class_names[3] == "3"


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_from_data_root(tmp_path: Path, compress: bool) -> None:
    write_fashion(tmp_path / "fashion-mnist", compress=compress)
    raw = load_fashion_mnist(LoadContext(tmp_path), DataConfig())
    assert raw.train_images.shape == (30, 28, 28) and raw.test_images.shape == (10, 28, 28)
    assert list(raw.train_labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert raw.class_names[9] == "ankle boot"


def test_fashion_mnist_found_through_bench_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion(tmp_path / "fashion-mnist", n_train=20)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert load_fashion_mnist(LoadContext(), DataConfig()).train_images.shape[0] == 20


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setattr("bench.datasets.fashion_mnist.SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(BenchError, match="fashion-mnist not found .*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(LoadContext(tmp_path / "empty"), DataConfig())


def test_truncated_and_bad_idx_files(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((4, 28, 28)))
    truncated = tmp_path / "t"
    truncated.write_bytes(good[:-10])
    with pytest.raises(BenchError, match="is truncated"):
        read_idx(truncated)
    bad = tmp_path / "b"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(BenchError, match="bad magic"):
        read_idx(bad)
    corrupt_gz = tmp_path / "c.gz"
    corrupt_gz.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(BenchError, match="cannot read IDX file"):
        read_idx(corrupt_gz)


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    data = load_dataset("fashion-mnist", DataConfig(test_limit=100))
    assert len(data.train) + len(data.val) == 60000 and len(data.test) == 100
    assert data.train.images.shape[1:] == (28, 28)


def test_to_tensor_resizes_normalises_and_makes_rgb() -> None:
    grey = np.full((2, 8, 8), 255, dtype=np.uint8)
    out = to_tensor(grey, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert out.shape == (2, 3, 16, 16)
    assert float(out.min()) == pytest.approx(1.0) and float(out.max()) == pytest.approx(1.0)
    rgb = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    out = to_tensor(rgb, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out[0, 1].min() == 1.0 and out[0, 0].max() == 0.0
