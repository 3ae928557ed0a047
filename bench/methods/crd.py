"""`crd`: Contrastive Representation Distillation with its per-sample memory banks.

Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020 (reference code:
HobbitLong/RepDistiller, crd/). Each training sample has one momentum-updated, L2-normalised entry in a
student bank and one in a teacher bank. For every sample the positive is its own bank entry and the
negatives are `crd_negatives` entries of samples of other classes. The NCE objective (the paper's Eq. 18)
runs both ways: student anchor vs the teacher bank and teacher anchor vs the student bank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, loss_weight, size, temperature
from bench.core.registries import METHODS
from bench.core.taps import POOLED
from bench.methods.base import MDISTILLER, REPDISTILLER, Method, MethodContext, Reference
from bench.methods.losses import labeled_cross_entropy

INDICES = "indices"  # teacher-dict entry: each batch sample's row in the training split (bench/run/train.py)


class OtherClassSampler(nn.Module):
    """Draws, for each anchor, training rows whose label differs from the anchor's (uniform, with replacement)."""

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        labels = labels.long().flatten()
        if bool((labels < 0).any()):
            raise BenchError("method 'crd' draws negatives by class from every train row's label; it cannot run "
                             "with data.labeled_limit (unlabeled rows); drop one of them")
        counts = torch.bincount(labels)
        if int((counts > 0).sum()) < 2:
            raise BenchError("method 'crd' draws negatives from other classes; the training split has one class")
        self.register_buffer("labels", labels, persistent=False)
        self.register_buffer("order", torch.argsort(labels, stable=True), persistent=False)  # rows grouped by class
        self.register_buffer("starts", torch.cumsum(counts, 0) - counts, persistent=False)
        self.register_buffer("counts", counts, persistent=False)

    def forward(self, anchors: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) rows for the anchor rows `anchors` (B,): skip each anchor's class block in `order`."""
        cls = self.labels[anchors]
        pool = (len(self.labels) - self.counts[cls]).unsqueeze(1)  # samples of other classes
        draws = (torch.rand(len(anchors), k, device=anchors.device) * pool).long().clamp(max=pool - 1)
        start, count = self.starts[cls].unsqueeze(1), self.counts[cls].unsqueeze(1)
        return self.order[torch.where(draws >= start, draws + count, draws)]


def momentum_update(memory: torch.Tensor, rows: torch.Tensor, embeddings: torch.Tensor, momentum: float) -> None:
    """memory[i] <- normalise(momentum * memory[i] + (1 - momentum) * v_i), in place (RepDistiller's update)."""
    with torch.no_grad():
        mixed = memory[rows] * momentum + embeddings.detach().to(memory.dtype) * (1.0 - momentum)
        memory[rows] = F.normalize(mixed, dim=1)


def nce_loss(probs: torch.Tensor, num_data: int) -> torch.Tensor:
    """Eq. 18: -(log h(positive) + sum_k log(1 - h(negative_k))) batch mean, h(P) = P / (P + K / N).

    `probs` (B, 1 + K): exp(score / T) / Z, the positive first; noise is uniform over the N training samples.
    """
    noise = (probs.shape[1] - 1) / num_data  # K * P_n
    positive = torch.log(probs[:, 0] / (probs[:, 0] + noise))
    negatives = torch.log(noise / (probs[:, 1:] + noise)).sum(1)
    return -(positive + negatives).mean()


@METHODS.register("crd", MethodCard("contrastive"))
class ContrastiveRepresentation(Method):
    """CRD (Tian, Krishnan & Isola, ICLR 2020): CE + crd_weight * (NCE student->teacher bank + teacher->student).

    As the paper's CIFAR-100 table (RepDistiller `-r 1 -a 0 -b 0.8`): CE weight 1, no KD term, beta 0.8;
    CRD+KD is `combined` with `combine: "crd:1,kd:1"`. Deliberate deviations: the embeddings are the student's
    `embedding` and the teacher's `pooled` tap (the paper's penultimate features); `crd_negatives` (16384 in the
    paper) is clipped to the training-set size minus one at build time; negatives are drawn uniformly with
    replacement from the other classes' samples (RepDistiller draws without replacement when there are enough);
    no 1e-7 epsilon in the NCE denominators (K/N > 0 already keeps them positive). The batch's training-row
    indices come in teacher["indices"] from the trainer. Z (one per direction) is estimated on the first batch
    as mean(exp(score / T)) * N and kept (a buffer, so a resumed run keeps it too).
    """

    reads_train_labels = True  # negatives from other classes: refused with data.labeled_limit
    knobs = {"crd_weight": loss_weight(0.8, "beta of the paper"), "crd_dim": size(128, help="embedding dim"),
             "crd_temperature": temperature(0.07),
             "crd_negatives": Knob(16384, int, ge=1, le=1_000_000, help="negatives per anchor (clipped to N-1)"),
             "crd_momentum": Knob(0.5, float, ge=0, lt=1, help="memory-bank momentum")}
    references = {"crd_weight": Reference(0.8, f"{REPDISTILLER} --distill crd -b 0.8; {MDISTILLER} CRD FEAT_WEIGHT"),
                  "crd_dim": Reference(128, f"RepDistiller train_student.py --feat_dim; {MDISTILLER} CRD.FEAT.DIM"),
                  "crd_temperature": Reference(0.07, f"RepDistiller --nce_t; {MDISTILLER} CRD.NCE.TEMPERATURE"),
                  "crd_negatives": Reference(16384, f"RepDistiller --nce_k; {MDISTILLER} CRD.NCE.K"),
                  "crd_momentum": Reference(0.5, f"RepDistiller --nce_m; {MDISTILLER} CRD.NCE.MOMENTUM")}
    needs_teacher = frozenset({POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        if context.train_labels is None:
            raise BenchError("method 'crd' keeps one memory entry per training sample; its context needs "
                             "train_labels (bench.run.parts.build_parts gives them)")
        self.sampler = OtherClassSampler(context.train_labels)
        self.num_data = len(context.train_labels)
        self.negatives = min(int(self.hparams["crd_negatives"]), self.num_data - 1)
        dim = int(self.hparams["crd_dim"])
        self.student_head = nn.Linear(math.prod(context.student_shape("embedding")), dim)
        self.teacher_head = nn.Linear(math.prod(context.teacher_shape(POOLED)), dim)
        bound = 1.0 / math.sqrt(dim / 3)  # RepDistiller's initial bank: uniform, rows of norm about 1
        self.register_buffer("student_memory", torch.rand(self.num_data, dim) * 2 * bound - bound)
        self.register_buffer("teacher_memory", torch.rand(self.num_data, dim) * 2 * bound - bound)
        self.register_buffer("normalisers", torch.full((2,), -1.0))  # Z (student anchor, teacher anchor)

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "crd": float(self.hparams["crd_weight"])}

    def embed(self, student: Mapping[str, torch.Tensor],
              teacher: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised projections (student, teacher) into the crd_dim space."""
        return (F.normalize(self.student_head(student["embedding"].flatten(1).float()), dim=1),
                F.normalize(self.teacher_head(teacher[POOLED].flatten(1).float()), dim=1))

    def contrast(self, anchors: torch.Tensor, memory: torch.Tensor, rows: torch.Tensor,
                 which: int) -> torch.Tensor:
        """NCE of anchors (B, D) vs memory[rows] (B, 1 + K, D); fixes Z on the first call."""
        scores = torch.exp(torch.einsum("bkd,bd->bk", memory[rows].detach(), anchors)
                           / float(self.hparams["crd_temperature"]))
        if float(self.normalisers[which]) < 0:
            self.normalisers[which] = scores.detach().mean() * self.num_data
        return nce_loss(scores / float(self.normalisers[which]), self.num_data)

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if INDICES not in teacher:
            raise ValueError("method 'crd' needs teacher['indices'], the batch's rows in the training split")
        index = teacher[INDICES].long()
        student_embed, teacher_embed = self.embed(student, teacher)
        rows = torch.cat([index.unsqueeze(1), self.sampler(index, self.negatives)], dim=1)
        loss = (self.contrast(student_embed, self.teacher_memory, rows, 0)
                + self.contrast(teacher_embed, self.student_memory, rows, 1))
        if self.training:
            momentum = float(self.hparams["crd_momentum"])
            momentum_update(self.student_memory, index, student_embed, momentum)
            momentum_update(self.teacher_memory, index, teacher_embed, momentum)
        return {"ce": labeled_cross_entropy(student["logits"], labels), "crd": loss}
