"""`tinybert`: hidden-state, attention and prediction distillation for transformer students (Jiao et al. 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.knobs import Knob, loss_weight, temperature
from methods import METHODS
from methods.attention import drop_extra_token
from methods.base import Method, MethodContext, Shape
from methods.losses import attention_matrix_loss, soft_cross_entropy
from methods.pairs import PairRegressor, layer_mapping


@METHODS.register("tinybert", kind="transformer")
class TinyBERT(Method):
    """CE + MSE of projected hidden states + MSE of attention maps + soft CE on teacher logits, mapped layers."""

    knobs = {"tinybert_layers": Knob("uniform", str, help="'uniform', 'last' or explicit '0=3,1=11'"),
             "hidden_weight": loss_weight(1.0), "attn_weight": loss_weight(1.0), "pred_weight": loss_weight(1.0),
             "pred_temperature": temperature(1.0)}
    needs_teacher = frozenset({"logits", "hidden", "attn"})
    needs_student = frozenset({"logits", "hidden", "attn"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        mapping = str(self.hparams["tinybert_layers"])
        self.hidden_pairs = layer_mapping(mapping, context.student_shapes, context.teacher_shapes, "hidden")
        self.attn_pairs = layer_mapping(mapping, context.student_shapes, context.teacher_shapes, "attn")
        self.regressors = nn.ModuleList(
            PairRegressor(context.student_shape(s), context.teacher_shape(t), "mse") for s, t in self.hidden_pairs
        )

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        mapping = str(cls.merge(hparams)["tinybert_layers"])
        pairs = layer_mapping(mapping, student_shapes, teacher_taps, "hidden")
        pairs += layer_mapping(mapping, student_shapes, teacher_taps, "attn")
        return frozenset(t for _, t in pairs) | {"logits"}

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "hidden": float(self.hparams["hidden_weight"]),
                "attn": float(self.hparams["attn_weight"]), "pred": float(self.hparams["pred_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = [regressor(student[s], teacher[t])
                  for (s, t), regressor in zip(self.hidden_pairs, self.regressors, strict=True)]
        attn = [attention_matrix_loss(*drop_extra_token(student[s], teacher[t]), "mse") for s, t in self.attn_pairs]
        return {
            "ce": F.cross_entropy(student["logits"], labels),
            "hidden": torch.stack(hidden).mean(),
            "attn": torch.stack(attn).mean(),
            "pred": soft_cross_entropy(student["logits"], teacher["logits"], float(self.hparams["pred_temperature"])),
        }
