"""The classic methods: `scratch`, `kd` and `feature` (FitNets)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bench.core.cards import MethodCard
from bench.core.knobs import Knob, loss_weight, temperature
from bench.core.registries import METHODS
from bench.core.taps import POOLED
from bench.methods.base import Method, MethodContext, Requirements, Shape
from bench.methods.losses import hinton_kd, labeled_cross_entropy
from bench.methods.pairs import PairRegressor, pair_families, resolve_pairs


@METHODS.register("scratch", MethodCard("baseline"))
class Scratch(Method):
    """Cross-entropy on labels only: the no-teacher baseline."""

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": labeled_cross_entropy(student["logits"], labels)}


@METHODS.register("kd", MethodCard("logits"))
class HintonKD(Method):
    """KD (Hinton, Vinyals & Dean, NIPS 2014 Deep Learning Workshop): alpha * T^2 * KL(p_t^T || p_s^T)
    + (1 - alpha) * CE. Deviation: the teacher's logits are its linear probe's (or zero-shot) logits."""

    knobs = {"alpha": Knob(0.7, float, ge=0, le=1, help="weight of the KD term; 1 - alpha weighs CE"),
             "temperature": temperature(4.0, "softening of both logits")}
    needs_teacher = frozenset({"logits"})

    def term_weights(self) -> dict[str, float]:
        alpha = float(self.hparams["alpha"])
        return {"ce": 1.0 - alpha, "kd": alpha}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": labeled_cross_entropy(student["logits"], labels),
            "kd": hinton_kd(student["logits"], teacher["logits"], float(self.hparams["temperature"])),
        }


@METHODS.register("feature", MethodCard("features"))
class FeatureDistillation(Method):
    """FitNets (Romero et al., ICLR 2015): CE + beta * mean over layer pairs of (regressed student output vs
    teacher tap, MSE or cosine). Deviations: one stage (the paper pre-trains the guided layer, then runs KD);
    by default the pooled embedding with a linear regressor instead of a middle-stage conv map.

    `feature_pairs`: 'embedding=pooled' (default), explicit 'hidden.2=feature_map,embedding=pooled', or
    'uniform' / 'last' to map the student's hidden.<i> onto the teacher's hidden.<j>.
    """

    knobs = {"beta": loss_weight(1.0, "weight of the feature term"),
             "feature_loss": Knob("mse", str, choices=("mse", "cosine"), help="distance of each pair"),
             "feature_pairs": Knob("embedding=pooled", str, help="student=teacher pairs, 'uniform' or 'last'")}
    needs_teacher = frozenset({POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        teacher_names = list(context.teacher_shapes) or [POOLED]
        student_names = list(context.student_shapes) or ["embedding"]
        self.pairs = resolve_pairs(str(self.hparams["feature_pairs"]), student_names, teacher_names)
        self.regressors = nn.ModuleList(
            PairRegressor(context.student_shape(s), context.teacher_shape(t), str(self.hparams["feature_loss"]))
            for s, t in self.pairs
        )

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        student, teacher = pair_families(str(cls.merge(hparams)["feature_pairs"]))
        return Requirements(student | {"logits"}, teacher)

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        pairs = resolve_pairs(str(cls.merge(hparams)["feature_pairs"]), list(student_shapes), teacher_taps)
        return frozenset(t for _, t in pairs)

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "feat": float(self.hparams["beta"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = [regressor(student[s], teacher[t]) for (s, t), regressor in zip(self.pairs, self.regressors,
                                                                              strict=True)]
        return {"ce": labeled_cross_entropy(student["logits"], labels), "feat": torch.stack(losses).mean()}
