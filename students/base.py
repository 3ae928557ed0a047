"""Student builders: build an nn.Module from hyperparameters; kind is 'head' or 'standalone'."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

HEAD = "head"  # takes teacher features; inference still needs the teacher backbone
STANDALONE = "standalone"  # takes images; inference needs no teacher


@dataclass(frozen=True)
class StudentContext:
    """What a builder needs to know about the task and the teacher."""

    num_classes: int
    teacher_dim: int
    image_size: int
    in_channels: int = 3


@dataclass(frozen=True)
class StudentBuilder:
    """A registered builder: `build(context, hparams)` and its hyperparameter defaults.

    The module's forward returns {"logits": (N, C), "embedding": (N, D)} and it has `embed_dim`.
    """

    build: Callable[[StudentContext, Mapping[str, Any]], nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    provides: frozenset[str] = frozenset({"logits", "embedding"})

    def __call__(self, context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
        merged = {**self.defaults, **{k: v for k, v in hparams.items() if k in self.defaults}}
        return self.build(context, merged)
