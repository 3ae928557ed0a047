"""scikit-learn's bundled 8x8 digits: 1797 images, 10 classes, a fixed 80/20 train/test split."""

from __future__ import annotations

import numpy as np

from bench.core.cards import DatasetCard
from bench.core.names import CLASSIFICATION
from bench.core.registries import DATASETS
from bench.data.splits import DataConfig, LoadContext, RawDataset


@DATASETS.register("digits", DatasetCard(CLASSIFICATION, image_size=8),
                   description="scikit-learn's 8x8 digits (bundled), 10 classes")
def load_digits(context: LoadContext, config: DataConfig) -> RawDataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(labels))  # fixed official-like test split
    num_test = len(labels) // 5
    test, train = order[:num_test], order[num_test:]
    names = tuple(str(digit) for digit in range(10))
    return RawDataset(images[train], labels[train], images[test], labels[test], names)
