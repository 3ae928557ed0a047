"""`attention`: attention transfer, spatial maps for conv features or attention matrices for transformers."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.knobs import Knob, loss_weight
from methods import METHODS
from methods.base import Method, MethodContext, Requirements, Shape
from methods.losses import attention_matrix_loss, attention_transfer
from methods.pairs import layer_mapping
from students.base import tap_family


def drop_extra_token(student_attn: torch.Tensor, teacher_attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """When one side has one token more (a CLS token), drop it there and renormalise the rows."""

    def drop(attn: torch.Tensor) -> torch.Tensor:
        attn = attn[..., 1:, 1:]
        return attn / attn.sum(-1, keepdim=True).clamp(min=1e-8)

    if teacher_attn.shape[-1] == student_attn.shape[-1] + 1:
        return student_attn, drop(teacher_attn)
    if student_attn.shape[-1] == teacher_attn.shape[-1] + 1:
        return drop(student_attn), teacher_attn
    return student_attn, teacher_attn


def attention_source(hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> str:
    """'attn' (transformer attention matrices) or 'feature_map' (conv spatial maps); 'auto' prefers attn."""
    source = str(hparams["at_source"])
    if source == "auto":
        teacher_families = {tap_family(tap) for tap in teacher_taps}
        both = "attn" in teacher_families and "attn" in {tap_family(s) for s in student_provides}
        return "attn" if both else "feature_map"
    if source not in ("attn", "feature_map"):
        raise BenchError(f"hparam at_source {source!r}: use auto, attn or feature_map")
    return source


@METHODS.register("attention", kind="attention")
class AttentionTransfer(Method):
    """CE + at_weight * attention transfer (Zagoruyko & Komodakis 2017; attention-matrix MSE/KL for ViTs)."""

    knobs = {"at_weight": loss_weight(0.5), "at_p": Knob(2.0, float, gt=0, le=16, help="power of the maps"),
             "at_source": Knob("auto", str, choices=("auto", "attn", "feature_map")),
             "at_layers": Knob("last", str, help="'last', 'uniform' or explicit '0=3,1=11'"),
             "at_loss": Knob("mse", str, choices=("mse", "kl"), help="attention-matrix loss")}
    needs_teacher = frozenset({"feature_map"})
    needs_student = frozenset({"logits", "feature_map"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.source = attention_source(self.hparams, context.teacher_shapes, context.student_shapes)
        self.pairs = self._pairs(self.hparams, context.student_shapes, list(context.teacher_shapes))

    @staticmethod
    def _pairs(hparams: Mapping[str, Any], student_names: Collection[str],
               teacher_names: Collection[str]) -> list[tuple[str, str]]:
        if attention_source(hparams, teacher_names, student_names) == "feature_map":
            return [("feature_map", "feature_map")]
        return layer_mapping(str(hparams["at_layers"]), student_names, teacher_names, "attn")

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        source = attention_source(cls.merge(hparams), teacher_taps, student_provides)
        return Requirements(frozenset({"logits", source}), frozenset({source}))

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        return frozenset(t for _, t in cls._pairs(cls.merge(hparams), list(student_shapes), teacher_taps))

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "at": float(self.hparams["at_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = []
        for s, t in self.pairs:
            if self.source == "feature_map":
                losses.append(attention_transfer(student[s], teacher[t], float(self.hparams["at_p"])))
            else:
                student_attn, teacher_attn = drop_extra_token(student[s], teacher[t])
                losses.append(attention_matrix_loss(student_attn, teacher_attn, str(self.hparams["at_loss"])))
        return {"ce": F.cross_entropy(student["logits"], labels), "at": torch.stack(losses).mean()}
