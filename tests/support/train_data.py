"""Tiny training data for trainer-level tests (checkpoints, outcomes): no teacher, no dataset on disk."""

from __future__ import annotations

import torch

from bench.run.train import TrainData

HPARAMS = {"lr": 3e-2, "weight_decay": 1e-4, "batch_size": 16, "alpha": 0.5, "temperature": 2.0, "hidden": 16}


def tiny_data() -> TrainData:
    """Three noisy clusters of 'teacher features' with teacher logits: a head student can fit them."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=generator) * 1.5
    splits = {}
    for split, n in (("train", 90), ("val", 30), ("test", 30)):
        labels = torch.arange(n) % 3
        splits[split] = (centers[labels] + torch.randn(n, 8, generator=generator), labels)
    logits = 3.0 * torch.nn.functional.one_hot(splits["train"][1], 3).float()
    return TrainData(inputs={s: x for s, (x, _) in splits.items()}, labels={s: y for s, (_, y) in splits.items()},
                     teacher_train={"logits": logits})
