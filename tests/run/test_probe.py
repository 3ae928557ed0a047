from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.teacher_outputs.probe import WEIGHT_DECAYS, accuracy, fit_linear_probe, stratified_folds


def blobs(n: int, dim: int, classes: int, spread: float, seed: int,
          scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * scale
    labels = torch.arange(n) % classes
    return centers[labels] + spread * torch.randn(n, dim, generator=generator), labels


def splits(sizes: dict[str, int], dim: int, classes: int, spread: float,
           scale: float = 3.0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    data = {name: blobs(n, dim, classes, spread, seed, scale) for seed, (name, n) in enumerate(sizes.items())}
    return {k: v[0] for k, v in data.items()}, {k: v[1] for k, v in data.items()}


def test_probe_separates_separable_features() -> None:
    features, labels = splits({"train": 300, "val": 100, "test": 200}, 16, 5, 1.0)
    result = fit_linear_probe(features, labels, 5)
    assert result.test_acc > 0.95 and result.val_acc > 0.95
    assert result.logits["train"].shape == (300, 5)
    assert result.weight_decay in WEIGHT_DECAYS
    assert result.kd_targets == "probe-oof-5"


def test_probe_is_at_chance_on_random_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    features = {k: torch.randn(n, 16, generator=generator) for k, n in (("train", 300), ("val", 200), ("test", 1000))}
    labels = {k: torch.randint(0, 5, (len(v),), generator=generator) for k, v in features.items()}
    result = fit_linear_probe(features, labels, 5)
    assert 0.1 < result.test_acc < 0.3


def test_out_of_fold_train_logits_are_not_memorised() -> None:
    """200 features, 100 noisy samples: in-sample the probe is always right; out-of-fold it is as good as on test."""
    features, labels = splits({"train": 100, "val": 100, "test": 1000}, 200, 5, 6.0, scale=1.0)
    in_sample = fit_linear_probe(features, labels, 5, targets="in-sample")
    oof = fit_linear_probe(features, labels, 5)
    assert (in_sample.kd_targets, oof.kd_targets) == ("probe-in-sample", "probe-oof-5")
    assert accuracy(in_sample.logits["train"], labels["train"]) == 1.0
    oof_train = accuracy(oof.logits["train"], labels["train"])
    assert abs(oof_train - oof.test_acc) < 0.15 and oof_train < 0.8, (oof_train, oof.test_acc)
    for split in ("val", "test"):  # val/test logits come from the probe fit on all of train either way
        assert torch.equal(in_sample.logits[split], oof.logits[split])
    assert in_sample.weight_decay == oof.weight_decay


def test_folds_are_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [23, 11, 7, 3])  # imbalanced, one class smaller than the fold count
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for label in range(4):
        per_fold = np.bincount(folds[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, (label, per_fold)
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=0))
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=1))


def test_fit_is_deterministic_and_the_chosen_l2_is_inside_the_grid() -> None:
    features, labels = splits({"train": 120, "val": 60, "test": 60}, 40, 4, 4.0, scale=1.0)
    first, second = fit_linear_probe(features, labels, 4), fit_linear_probe(features, labels, 4)
    for split in ("train", "val", "test"):
        assert torch.equal(first.logits[split], second.logits[split])
    assert first.weight_decay == second.weight_decay
    assert min(WEIGHT_DECAYS) < first.weight_decay < max(WEIGHT_DECAYS)  # noisy data: neither edge of the grid
    other_seed = fit_linear_probe(features, labels, 4, seed=1)
    assert not torch.equal(first.logits["train"], other_seed.logits["train"])
    assert torch.equal(first.logits["test"], other_seed.logits["test"])


def test_grid_spans_six_decades() -> None:
    assert len(WEIGHT_DECAYS) == 10 and min(WEIGHT_DECAYS) == 1e-6 and max(WEIGHT_DECAYS) == 1e-1


def test_unknown_targets_kind_is_rejected() -> None:
    features, labels = splits({"train": 20, "val": 10, "test": 10}, 4, 2, 1.0)
    with pytest.raises(ValueError, match="targets='oops'"):
        fit_linear_probe(features, labels, 2, targets="oops")
