"""The foundation methods: `scratch`, `kd`, `feature` and `combined`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from methods import METHODS
from methods.base import Method, MethodContext
from methods.losses import FeatureRegressor, hinton_kd


@METHODS.register("scratch", kind="baseline")
class Scratch(Method):
    """Cross-entropy on labels only: the no-teacher baseline."""

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(student["logits"], labels)}


@METHODS.register("kd", kind="logits")
class HintonKD(Method):
    """Hinton KD: alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE."""

    defaults = {"alpha": 0.7, "temperature": 4.0}
    needs_teacher = frozenset({"logits"})

    def term_weights(self) -> dict[str, float]:
        alpha = float(self.hparams["alpha"])
        return {"ce": 1.0 - alpha, "kd": alpha}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": F.cross_entropy(student["logits"], labels),
            "kd": hinton_kd(student["logits"], teacher["logits"], float(self.hparams["temperature"])),
        }


@METHODS.register("feature", kind="features")
class FeatureDistillation(Method):
    """FitNets-style: CE + beta * (projected student embedding vs teacher embedding, MSE or cosine)."""

    defaults = {"beta": 1.0, "feature_loss": "mse"}
    needs_teacher = frozenset({"pooled"})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.regressor = FeatureRegressor(
            context.student_dim, context.teacher_dim, str(self.hparams["feature_loss"])
        )

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "feat": float(self.hparams["beta"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": F.cross_entropy(student["logits"], labels),
            "feat": self.regressor(student["embedding"], teacher["pooled"]),
        }


@METHODS.register("combined", kind="combined")
class Combined(Method):
    """The practitioner's recipe: (1 - alpha) * CE + alpha * KD(T) + beta * feature."""

    defaults = {"alpha": 0.7, "temperature": 4.0, "beta": 1.0, "feature_loss": "mse"}
    needs_teacher = frozenset({"logits", "pooled"})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.regressor = FeatureRegressor(
            context.student_dim, context.teacher_dim, str(self.hparams["feature_loss"])
        )

    def term_weights(self) -> dict[str, float]:
        alpha = float(self.hparams["alpha"])
        return {"ce": 1.0 - alpha, "kd": alpha, "feat": float(self.hparams["beta"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": F.cross_entropy(student["logits"], labels),
            "kd": hinton_kd(student["logits"], teacher["logits"], float(self.hparams["temperature"])),
            "feat": self.regressor(student["embedding"], teacher["pooled"]),
        }
