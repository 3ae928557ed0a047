"""Head students on the teacher's pooled features: `projection` and `bottleneck`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import StudentCard
from bench.core.knobs import Knob, size
from bench.core.names import HEAD
from bench.core.registries import STUDENTS
from bench.students.base import StudentBuilder, StudentContext


class ProjectionStudent(nn.Module):
    """Linear map to a compact L2-normalised embedding; cosine classifier with learnable scale."""

    def __init__(self, teacher_dim: int, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.norm = nn.LayerNorm(teacher_dim)
        self.proj = nn.Linear(teacher_dim, embed_dim)
        self.class_embeddings = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, teacher_features: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = F.normalize(self.proj(self.norm(teacher_features)), dim=-1)
        classes = F.normalize(self.class_embeddings, dim=-1)
        logits = self.logit_scale.exp().clamp(max=100.0) * embedding @ classes.t()
        return {"logits": logits, "embedding": embedding}


class BottleneckStudent(nn.Module):
    """Linear -> ReLU -> Linear down to a bottleneck embedding, then a linear classifier."""

    def __init__(self, teacher_dim: int, hidden_dim: int, bottleneck_dim: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.embed_dim = bottleneck_dim
        self.encoder = nn.Sequential(
            nn.LayerNorm(teacher_dim),
            nn.Linear(teacher_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.classifier = nn.Linear(bottleneck_dim, num_classes)

    def forward(self, teacher_features: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.encoder(teacher_features)
        return {"logits": self.classifier(embedding), "embedding": embedding}


def _build_projection(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return ProjectionStudent(context.teacher_dim, int(hparams["embed_dim"]), context.num_classes)


def _build_bottleneck(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return BottleneckStudent(
        context.teacher_dim, int(hparams["hidden_dim"]), int(hparams["bottleneck_dim"]),
        context.num_classes, float(hparams["dropout"]),
    )


STUDENTS.add(
    "projection", StudentBuilder(_build_projection, {"embed_dim": size(64, help="embedding dim")}), StudentCard(HEAD),
    description="linear projection of teacher features to a normalised embedding, cosine classifier",
)
STUDENTS.add(
    "bottleneck",
    StudentBuilder(_build_bottleneck, {"hidden_dim": size(256, 65536), "bottleneck_dim": size(64, help="embedding dim"),
                                        "dropout": Knob(0.1, float, ge=0, lt=1)}),
    StudentCard(HEAD), description="Linear -> ReLU -> Linear bottleneck on teacher features, then a classifier",
)
