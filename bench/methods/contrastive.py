"""Contrastive methods: `infonce` (in-batch, student vs teacher embeddings) and `clip` (the teacher's text space).

The paper's CRD, with per-sample memory banks, is `crd` in bench/methods/crd.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, loss_weight, size, temperature
from bench.core.registries import METHODS
from bench.core.taps import IMAGE_EMBED, POOLED
from bench.methods.base import Method, MethodContext
from bench.methods.losses import info_nce, labeled_cross_entropy


@METHODS.register("infonce", MethodCard("contrastive"))
class InBatchInfoNCE(Method):
    """In-batch InfoNCE from student to teacher embeddings (CE + infonce_weight * InfoNCE, T = 0.1).

    In the spirit of CRD (Tian, Krishnan & Isola, ICLR 2020) and InfoNCE (van den Oord, Li & Vinyals 2018),
    but not the paper's CRD (that is `crd`): one direction only (student query, teacher keys), the other
    samples of the batch are the negatives, same-class ones included, and an optional FIFO queue of
    `infonce_memory` past teacher keys adds negatives (0 = none). Linear heads project both sides to
    `infonce_dim` and L2-normalise. This was `crd` (with `crd_*` hparams) before the paper's CRD was added.
    """

    knobs = {"infonce_weight": loss_weight(0.8), "infonce_dim": size(128, help="projection dim"),
             "infonce_temperature": temperature(0.1),
             "infonce_memory": Knob(0, int, ge=0, le=1_000_000, help="queued past teacher keys (0: in-batch only)")}
    needs_teacher = frozenset({POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        dim = int(self.hparams["infonce_dim"])
        self.student_head = nn.Linear(context.student_dim, dim)
        self.teacher_head = nn.Linear(context.teacher_shape(POOLED)[0], dim)
        self.register_buffer("memory", torch.zeros(int(self.hparams["infonce_memory"]), dim), persistent=False)
        self.filled = 0
        self.position = 0

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "infonce": float(self.hparams["infonce_weight"])}

    def _negatives_then_enqueue(self, keys: torch.Tensor) -> torch.Tensor | None:
        """Past teacher keys as extra negatives; this batch's keys replace the oldest ones."""
        size = len(self.memory)
        if size == 0:
            return None
        negatives = self.memory[: self.filled].clone()
        if self.training:
            with torch.no_grad():
                for key in keys.detach()[:size]:
                    self.memory[self.position] = key
                    self.position = (self.position + 1) % size
                    self.filled = min(self.filled + 1, size)
        return negatives

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        queries = F.normalize(self.student_head(student["embedding"]), dim=-1)
        keys = F.normalize(self.teacher_head(teacher[POOLED]), dim=-1)
        negatives = self._negatives_then_enqueue(keys)
        return {
            "ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing),
            "infonce": info_nce(queries, keys, float(self.hparams["infonce_temperature"]), negatives),
        }


def clip_losses(student_embed: torch.Tensor, teacher_image: torch.Tensor, class_text: torch.Tensor,
                labels: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE of the student's image-to-class-text similarities, KL(teacher's || student's similarity softmax))."""
    student_logits = F.normalize(student_embed, dim=-1) @ class_text.t() / temperature
    teacher_probs = F.softmax(F.normalize(teacher_image, dim=-1) @ class_text.t() / temperature, dim=-1)
    contrastive = labeled_cross_entropy(student_logits, labels)
    return contrastive, F.kl_div(F.log_softmax(student_logits, dim=-1), teacher_probs, reduction="batchmean")


@METHODS.register("clip", MethodCard("image-text"))
class ClipDistillation(Method):
    """No single paper (CLIP-style zero-shot targets, Radford et al., ICML 2021): CE of the student's similarities
    to the teacher's class-prompt text embeddings + KL to the teacher image embedding's similarity softmax."""

    knobs = {"clip_weight": loss_weight(1.0), "clip_kl_weight": loss_weight(1.0),
             "clip_temperature": temperature(0.07), "clip_prompt": Knob("a photo of a {}.", str)}
    needs_teacher = frozenset({IMAGE_EMBED, "text"})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        if context.class_text is None:
            raise BenchError("method 'clip' needs the teacher's text embeddings of the class prompts")
        self.register_buffer("class_text", F.normalize(context.class_text.detach().float(), dim=-1),
                             persistent=False)
        self.projection = nn.Linear(context.student_dim, context.class_text.shape[1])

    @classmethod
    def class_prompts(cls, hparams: Mapping[str, Any], class_names: Sequence[str]) -> list[str] | None:
        prompt = str(cls.merge(hparams)["clip_prompt"])
        return [prompt.format(name) for name in class_names]

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "clip": float(self.hparams["clip_weight"]),
                "clip_kl": float(self.hparams["clip_kl_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        contrastive, kl = clip_losses(self.projection(student["embedding"]), teacher[IMAGE_EMBED],
                                      self.class_text, labels, float(self.hparams["clip_temperature"]))
        return {"ce": labeled_cross_entropy(student["logits"], labels, self.label_smoothing), "clip": contrastive,
                "clip_kl": kl}
