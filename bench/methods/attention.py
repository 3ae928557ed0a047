"""`attention`: attention transfer, spatial maps for conv features or attention matrices for transformers."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, loss_weight
from bench.core.registries import METHODS
from bench.methods.base import MDISTILLER, REPDISTILLER, Method, MethodContext, Reference, Requirements, Shape
from bench.methods.losses import attention_matrix_loss, attention_transfer, labeled_cross_entropy
from bench.methods.pairs import layer_mapping
from bench.students.base import tap_family


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


def conv_stages(shapes: Mapping[str, Shape] | Collection[str], conv: bool) -> list[str]:
    """`hidden.<i>` names that are conv maps: per-sample shape (C, H, W) when shapes are known, else all if `conv`."""
    if isinstance(shapes, Mapping):
        return [name for name in shapes if tap_family(name) == "hidden" and len(shapes[name]) == 3]
    return [name for name in shapes if tap_family(name) == "hidden"] if conv else []


def map_pairs(layers: str, student: Mapping[str, Shape] | Collection[str],
              teacher: Mapping[str, Shape] | Collection[str]) -> list[tuple[str, str]]:
    """Matched conv stages: 'uniform' maps every student stage (hidden.<i> maps) onto the teacher's stages,
    'last' or no stages on one side gives the final feature_map pair; explicit '0=1,2=3' pairs hidden.<i>."""
    student_stages = conv_stages(student, conv=True)
    teacher_stages = conv_stages(teacher, conv="feature_map" in teacher)  # ViT hidden taps are tokens
    if layers == "last" or (layers == "uniform" and not (student_stages and teacher_stages)):
        return [("feature_map", "feature_map")]
    return layer_mapping(layers, student_stages, teacher_stages, "hidden")


@METHODS.register("attention", MethodCard("attention"))
class AttentionTransfer(Method):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017): CE + beta * sum over matched stages of
    mean_{batch, positions} (Q_s/|Q_s| - Q_t/|Q_t|)^2, Q = mean over channels of |A|^p, p = 2.

    `at_weight` is beta = 1000 as RepDistiller (-b 1000) and mdistiller (AT.LOSS.FEAT_WEIGHT); the paper's own
    code multiplies by beta/2 = 500 (set `at_weight: 500` for that). Stages (`at_layers: uniform`, the
    default): every conv-map `hidden.<i>` of the student is matched to the teacher's conv stages by the
    uniform layer mapping (student stage i -> teacher stage round((i+1)T/S)-1); a teacher without conv
    stages (e.g. effnet-lite0, which gives only feature_map) or `at_layers: last` compares the final
    feature maps. Deviations: the paper compares same-size maps of same-depth networks; here the larger grid
    is average-pooled to the smaller one (as RepDistiller). For transformer students and teachers
    (`at_source: attn`) the term is instead the MSE (or row-wise KL) of attention-probability matrices summed
    over mapped layers, weighted by `at_attn_weight` (0.5): not in the paper.
    """

    knobs = {"at_weight": loss_weight(1000.0, "beta (RepDistiller, mdistiller; the paper's code uses beta/2)"),
             "at_attn_weight": loss_weight(0.5, "weight of the attention-matrix variant (transformers)"),
             "at_p": Knob(2.0, float, gt=0, le=16, help="power of the maps"),
             "at_source": Knob("auto", str, choices=("auto", "attn", "feature_map")),
             "at_layers": Knob("uniform", str, help="'last', 'uniform' or explicit '0=3,1=11'"),
             "at_loss": Knob("mse", str, choices=("mse", "kl"), help="attention-matrix loss")}
    references = {"at_weight": Reference(1000.0, f"{REPDISTILLER} --distill attention -b 1000; {MDISTILLER} "
                                                 "AT.LOSS.FEAT_WEIGHT"),
                  "at_p": Reference(2.0, f"RepDistiller distiller_zoo/AT.py p=2; {MDISTILLER} AT.P")}
    departures = {"at_attn_weight": "no reference: the attention-matrix variant for transformers is not in the "
                                    "paper or either codebase"}
    needs_teacher = frozenset({"feature_map"})
    needs_student = frozenset({"logits", "feature_map"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.source = attention_source(self.hparams, context.teacher_shapes, context.student_shapes)
        self.pairs = self._pairs(self.hparams, context.student_shapes, context.teacher_shapes)
        if self.source == "feature_map":
            self._refuse_single_positions(context)

    def _refuse_single_positions(self, context: MethodContext) -> None:
        """Maps compared at 1x1 (after pooling the larger to the smaller) have one position: their normalised
        attention maps are both 1, so the AT term would be 0 whatever the networks do."""
        for s, t in self.pairs:
            shapes = [tuple(shape) for shape in (context.student_shapes.get(s), context.teacher_shapes.get(t))
                      if shape is not None and len(shape) == 3]
            if len(shapes) == 2 and min(min(shape[1:]) for shape in shapes) == 1:
                raise BenchError(f"method 'attention': student {s} {shapes[0][1:]} and teacher {t} {shapes[1][1:]} "
                                 "compare at 1x1, where every normalised attention map is 1 and the AT term is 0; "
                                 "raise data.image_size (the teacher's) or student_image_size")

    @staticmethod
    def _pairs(hparams: Mapping[str, Any], student: Mapping[str, Shape] | Collection[str],
               teacher: Mapping[str, Shape] | Collection[str]) -> list[tuple[str, str]]:
        if attention_source(hparams, teacher, student) == "feature_map":
            return map_pairs(str(hparams["at_layers"]), student, teacher)
        return layer_mapping(str(hparams["at_layers"]), student, teacher, "attn")

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        source = attention_source(cls.merge(hparams), teacher_taps, student_provides)
        return Requirements(frozenset({"logits", source}), frozenset({source}))

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        merged = cls.merge(hparams)
        taps = frozenset(t for _, t in cls._pairs(merged, student_shapes, list(teacher_taps)))
        if attention_source(merged, teacher_taps, student_shapes) == "feature_map":
            taps |= {"feature_map"}  # the fallback pair when the teacher's hidden taps turn out not to be maps
        return taps

    def term_weights(self) -> dict[str, float]:
        weight = self.hparams["at_weight"] if self.source == "feature_map" else self.hparams["at_attn_weight"]
        return {"ce": 1.0, "at": float(weight)}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = []
        for s, t in self.pairs:
            if self.source == "feature_map":
                losses.append(attention_transfer(student[s], teacher[t], float(self.hparams["at_p"])))
            else:
                student_attn, teacher_attn = drop_extra_token(student[s], teacher[t])
                losses.append(attention_matrix_loss(student_attn, teacher_attn, str(self.hparams["at_loss"])))
        return {"ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing),
                "at": torch.stack(losses).sum()}
