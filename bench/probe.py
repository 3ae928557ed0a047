"""Linear probe on frozen teacher features: the teacher's reference accuracy and its KD logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class ProbeResult:
    """The chosen L2 strength, val/test accuracy and logits for every split."""

    weight_decay: float
    val_acc: float
    test_acc: float
    logits: dict[str, torch.Tensor]
    reference: str = "linear-probe"  # or the zero-shot head's description
    head_params: int | None = None  # None: a linear layer on the pooled embedding


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).float().mean())


def _fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
         max_iter: int) -> torch.nn.Linear:
    linear = torch.nn.Linear(features.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(features), labels) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def fit_linear_probe(
    features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS, max_iter: int = 200,
) -> ProbeResult:
    """Multinomial logistic regression (L-BFGS) on standardised features; L2 chosen on val."""
    mean = features["train"].mean(dim=0)
    std = features["train"].std(dim=0) + 1e-6
    standardised = {split: (x - mean) / std for split, x in features.items()}
    best: tuple[float, float, torch.nn.Linear] | None = None
    with torch.enable_grad():
        for weight_decay in weight_decays:
            linear = _fit(standardised["train"], labels["train"], num_classes, weight_decay, max_iter)
            with torch.no_grad():
                val_acc = accuracy(linear(standardised["val"]), labels["val"])
            if best is None or val_acc > best[0]:
                best = (val_acc, weight_decay, linear)
    assert best is not None
    val_acc, weight_decay, linear = best
    with torch.no_grad():
        logits = {split: linear(x) for split, x in standardised.items()}
    return ProbeResult(weight_decay, val_acc, accuracy(logits["test"], labels["test"]), logits)
