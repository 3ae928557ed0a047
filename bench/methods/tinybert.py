"""`tinybert`: hidden-state, attention-score and prediction distillation for transformer students."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, loss_weight, temperature
from bench.core.registries import METHODS
from bench.methods.attention import drop_extra_token
from bench.methods.base import Method, MethodContext, Requirements, Shape
from bench.methods.losses import attention_matrix_loss, labeled_cross_entropy, soft_cross_entropy
from bench.methods.pairs import PairRegressor, layer_mapping

ATTN_TAPS = {"scores": "attn_scores", "probs": "attn"}


def attention_family(hparams: Mapping[str, Any]) -> str:
    """'attn_scores' (pre-softmax scores, the paper) or 'attn' (probabilities, for teachers without scores)."""
    which = str(hparams["tinybert_attn"])
    if which not in ATTN_TAPS:
        raise BenchError(f"hparam tinybert_attn {which!r}: use scores (the paper) or probs")
    return ATTN_TAPS[which]


def drop_extra_score_token(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """When one side has one token more (a CLS token), drop its row and column (scores need no renormalising)."""
    if teacher.shape[-1] == student.shape[-1] + 1:
        return student, teacher[..., 1:, 1:]
    if student.shape[-1] == teacher.shape[-1] + 1:
        return student[..., 1:, 1:], teacher
    return student, teacher


@METHODS.register("tinybert", MethodCard("transformer"))
class TinyBERT(Method):
    """TinyBERT (Jiao et al., Findings of EMNLP 2020): CE + sum over mapped layers of MSE(pre-softmax attention
    scores) + sum over mapped layers of MSE(W_h H_s, H_t) + soft CE of the teacher's logits at temperature t.

    Layers: `tinybert_layers` 'uniform' (student layer i -> teacher layer round((i+1)T/S)-1, the paper's
    g(m) = m * T/S), 'last' or explicit pairs. Deviations: one stage (the paper runs intermediate-layer then
    prediction-layer distillation) with hard-label CE added; no embedding-layer term; no data augmentation;
    the teacher's logits are the linear probe's; a CLS token present on one side only is dropped; when head
    counts differ, scores are averaged over heads. `tinybert_attn: probs` matches softmax probabilities
    instead, for teachers that give no attn_scores taps (not the paper).
    """

    knobs = {"tinybert_layers": Knob("uniform", str, help="'uniform', 'last' or explicit '0=3,1=11'"),
             "hidden_weight": loss_weight(1.0), "attn_weight": loss_weight(1.0), "pred_weight": loss_weight(1.0),
             "pred_temperature": temperature(1.0),
             "tinybert_attn": Knob("scores", str, choices=("scores", "probs"),
                                   help="match pre-softmax scores (paper) or probabilities")}
    needs_teacher = frozenset({"logits", "hidden", "attn_scores"})
    needs_student = frozenset({"logits", "hidden", "attn_scores"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        mapping, self.attn_family = str(self.hparams["tinybert_layers"]), attention_family(self.hparams)
        self.hidden_pairs = layer_mapping(mapping, context.student_shapes, context.teacher_shapes, "hidden")
        self.attn_pairs = layer_mapping(mapping, context.student_shapes, context.teacher_shapes, self.attn_family)
        self.regressors = nn.ModuleList(
            PairRegressor(context.student_shape(s), context.teacher_shape(t), "mse") for s, t in self.hidden_pairs
        )

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        family = attention_family(cls.merge(hparams))
        return Requirements(frozenset({"logits", "hidden", family}), frozenset({"logits", "hidden", family}))

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        merged = cls.merge(hparams)
        mapping = str(merged["tinybert_layers"])
        pairs = layer_mapping(mapping, student_shapes, teacher_taps, "hidden")
        pairs += layer_mapping(mapping, student_shapes, teacher_taps, attention_family(merged))
        return frozenset(t for _, t in pairs) | {"logits"}

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "hidden": float(self.hparams["hidden_weight"]),
                "attn": float(self.hparams["attn_weight"]), "pred": float(self.hparams["pred_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = [regressor(student[s], teacher[t])
                  for (s, t), regressor in zip(self.hidden_pairs, self.regressors, strict=True)]
        drop = drop_extra_score_token if self.attn_family == "attn_scores" else drop_extra_token
        attn = [attention_matrix_loss(*drop(student[s], teacher[t]), "mse") for s, t in self.attn_pairs]
        return {
            "ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing),
            "hidden": torch.stack(hidden).sum(),
            "attn": torch.stack(attn).sum(),
            "pred": soft_cross_entropy(student["logits"], teacher["logits"], float(self.hparams["pred_temperature"])),
        }
