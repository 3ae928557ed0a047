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
from bench.methods.base import MDISTILLER, REPDISTILLER, Method, MethodContext, Reference, Requirements, Shape
from bench.methods.losses import hinton_kd, labeled_cross_entropy, stacked_cross_entropy, stacked_hinton_kd
from bench.methods.pairs import PairRegressor, pair_families, resolve_pairs


@METHODS.register("scratch", MethodCard("baseline"))
class Scratch(Method):
    """Cross-entropy on labels only: the no-teacher baseline."""

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing)}

    @classmethod
    def stacked_terms(cls, methods: Sequence[Method], student: Mapping[str, torch.Tensor],
                      teacher: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": stacked_cross_entropy(student["logits"], labels, [m.label_smoothing for m in methods])}


@METHODS.register("kd", MethodCard("logits"))
class HintonKD(Method):
    """KD (Hinton, Vinyals & Dean, NIPS 2014 Deep Learning Workshop): alpha * T^2 * KL(p_t^T || p_s^T)
    + (1 - alpha) * CE, alpha 0.9 and T 4 as RepDistiller (-r 0.1 -a 0.9) and mdistiller (CE 0.1, KD 0.9).
    Deviation: the teacher's logits are its linear probe's (or zero-shot, or fine-tuned) logits."""

    knobs = {"alpha": Knob(0.9, float, ge=0, le=1, help="weight of the KD term; 1 - alpha weighs CE"),
             "temperature": temperature(4.0, "softening of both logits")}
    references = {"alpha": Reference(0.9, f"{REPDISTILLER} -r 0.1 -a 0.9; {MDISTILLER} KD.LOSS.KD_WEIGHT"),
                  "temperature": Reference(4.0, f"RepDistiller train_student.py --kd_T; {MDISTILLER} KD.TEMPERATURE")}
    needs_teacher = frozenset({"logits"})

    def term_weights(self) -> dict[str, float]:
        alpha = float(self.hparams["alpha"])
        return {"ce": 1.0 - alpha, "kd": alpha}

    def part_weights(self) -> dict[str, float]:
        """In `combined` the KD term weighs 1 (times its combine weight): alpha only trades CE, set there by
        ce_weight, so RepDistiller's CRD+KD (-r 1 -a 1 -b 0.8) is `combine: "crd:1,kd:1"`."""
        return {"kd": 1.0}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing),
            "kd": hinton_kd(student["logits"], teacher["logits"], float(self.hparams["temperature"])),
        }

    @classmethod
    def stacked_terms(cls, methods: Sequence[Method], student: Mapping[str, torch.Tensor],
                      teacher: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        temperatures = [float(m.hparams["temperature"]) for m in methods]
        return {"ce": stacked_cross_entropy(student["logits"], labels, [m.label_smoothing for m in methods]),
                "kd": stacked_hinton_kd(student["logits"], teacher["logits"], temperatures)}


@METHODS.register("feature", MethodCard("features"))
class FeatureDistillation(Method):
    """FitNets (Romero et al., ICLR 2015): CE + beta * mean over layer pairs of (regressed student output vs
    teacher tap, MSE or cosine), beta 100 as RepDistiller (-b 100) and mdistiller (FITNET.LOSS.FEAT_WEIGHT).
    Deviations: one stage (the paper pre-trains the guided layer, then runs KD); by default the pooled embedding
    with a linear regressor instead of a middle-stage conv map.

    `feature_pairs`: 'embedding=pooled' (default), explicit 'hidden.2=feature_map,embedding=pooled', or
    'uniform' / 'last' to map the student's hidden.<i> onto the teacher's hidden.<j>.
    """

    knobs = {"beta": loss_weight(100.0, "weight of the feature term"),
             "feature_loss": Knob("mse", str, choices=("mse", "cosine"), help="distance of each pair"),
             "feature_pairs": Knob("embedding=pooled", str, help="student=teacher pairs, 'uniform' or 'last'")}
    references = {"beta": Reference(100.0, f"{REPDISTILLER} --distill hint -b 100; {MDISTILLER} FITNET FEAT_WEIGHT"),
                  "feature_pairs": Reference("a middle-stage conv map (hint layer 2)",
                                             f"{MDISTILLER} FITNET.HINT_LAYER = 2")}
    departures = {"feature_pairs": "the pooled embedding exists for every student and teacher (head students and "
                                   "ViT teachers have no middle-stage conv map); set it to a hidden pair to follow "
                                   "the paper"}
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
        return {"ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing),
                "feat": torch.stack(losses).mean()}
