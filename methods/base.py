"""Distillation methods: modules whose forward returns named loss terms; the runner weights them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class MethodContext:
    """Dimensions a method needs to build its own trainable parts (projections)."""

    num_classes: int
    teacher_dim: int
    student_dim: int


class Method(nn.Module):
    """Base class: declare `defaults`, `needs_teacher`, `needs_student`; return loss terms."""

    defaults: ClassVar[Mapping[str, Any]] = {}
    needs_teacher: ClassVar[frozenset[str]] = frozenset()
    needs_student: ClassVar[frozenset[str]] = frozenset({"logits"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__()
        self.context = context
        self.hparams = {**self.defaults, **{k: v for k, v in hparams.items() if k in self.defaults}}

    def term_weights(self) -> dict[str, float]:
        """Weight of each named term in the total loss."""
        return {"ce": 1.0}

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms (a term missing a weight is an error, not silently dropped)."""
        weights = self.term_weights()
        return sum(weights[name] * value for name, value in terms.items())  # type: ignore[return-value]

    def num_params(self) -> int:
        """Trainable parameters the method adds (projections); reported with every run."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
