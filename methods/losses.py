"""Loss functions shared by methods (one place for each formula)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hinton_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(p_teacher^T || p_student^T), batch mean (Hinton et al., 2015)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature**2


class FeatureRegressor(nn.Module):
    """Project the student embedding to the teacher's dim and compare (MSE or 1 - cosine)."""

    def __init__(self, student_dim: int, teacher_dim: int, loss: str) -> None:
        super().__init__()
        if loss not in ("mse", "cosine"):
            raise ValueError(f"feature loss must be 'mse' or 'cosine', got {loss!r}")
        self.loss = loss
        self.projection = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
        projected = self.projection(student_embedding)
        if self.loss == "mse":
            return F.mse_loss(projected, teacher_embedding)
        return (1.0 - F.cosine_similarity(projected, teacher_embedding, dim=-1)).mean()
