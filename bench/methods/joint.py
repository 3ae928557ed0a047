"""Joint-space methods for image-text data: the student learns the teacher's image-text embedding space.

The retrieval trial gives every joint-space method the teacher's `image_embed` of each image and
`text_embed`, the normalised mean of the teacher's `encode_text` of that image's captions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import MethodCard
from bench.core.knobs import loss_weight, temperature
from bench.core.registries import METHODS
from bench.core.taps import IMAGE_EMBED, TEXT_EMBED
from bench.methods.base import Method, MethodContext


class JointSpaceMethod(Method):
    """Base: a linear map from the student embedding into the teacher's joint space (kept at inference)."""

    needs_teacher = frozenset({IMAGE_EMBED})
    needs_student = frozenset({"embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.projection = nn.Linear(context.student_dim, context.teacher_dim)  # teacher_dim = joint dim

    def joint_embedding(self, student: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The student's L2-normalised embedding in the teacher's joint space."""
        return F.normalize(self.projection(student["embedding"].float()), dim=-1)

    def cosine_term(self, joint: torch.Tensor, teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return (1.0 - (joint * F.normalize(teacher[IMAGE_EMBED], dim=-1)).sum(dim=-1)).mean()


@METHODS.register("joint-cosine", MethodCard("joint-space", joint_space=True))
class JointCosine(JointSpaceMethod):
    """1 - cosine(projected student embedding, teacher image_embed)."""

    def term_weights(self) -> dict[str, float]:
        return {"cos": 1.0}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cos": self.cosine_term(self.joint_embedding(student), teacher)}


@METHODS.register("joint-contrastive", MethodCard("joint-space", joint_space=True))
class JointContrastive(JointSpaceMethod):
    """Cosine to the teacher's image_embed + itc_weight * symmetric InfoNCE against its caption embeddings."""

    knobs = {"itc_weight": loss_weight(1.0), "itc_temperature": temperature(0.05)}
    needs_text = True  # reads teacher["text_embed"] as well

    def term_weights(self) -> dict[str, float]:
        return {"cos": 1.0, "itc": float(self.hparams["itc_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        joint = self.joint_embedding(student)
        texts = F.normalize(teacher[TEXT_EMBED], dim=-1)
        logits = joint @ texts.t() / float(self.hparams["itc_temperature"])
        targets = torch.arange(len(joint), device=joint.device)
        itc = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        return {"cos": self.cosine_term(joint, teacher), "itc": itc}
