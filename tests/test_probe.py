from __future__ import annotations

import torch

from bench.probe import fit_linear_probe


def blobs(n: int, dim: int, classes: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(n) % classes
    return centers[labels] + spread * torch.randn(n, dim, generator=generator), labels


def test_probe_separates_separable_features() -> None:
    splits = {
        name: blobs(n, 16, 5, 1.0, seed) for name, n, seed in (("train", 300, 0), ("val", 100, 1), ("test", 200, 2))
    }
    result = fit_linear_probe({k: v[0] for k, v in splits.items()}, {k: v[1] for k, v in splits.items()}, 5)
    assert result.test_acc > 0.95 and result.val_acc > 0.95
    assert result.logits["train"].shape == (300, 5)
    assert result.weight_decay in (1e-4, 1e-3, 1e-2)


def test_probe_is_at_chance_on_random_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    features = {k: torch.randn(n, 16, generator=generator) for k, n in (("train", 300), ("val", 200), ("test", 1000))}
    labels = {k: torch.randint(0, 5, (len(v),), generator=generator) for k, v in features.items()}
    result = fit_linear_probe(features, labels, 5)
    assert 0.1 < result.test_acc < 0.3
