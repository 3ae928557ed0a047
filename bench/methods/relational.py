"""Relational methods: `rkd` (distance + angle) and `sp` (similarity preserving) on embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from bench.core.cards import MethodCard
from bench.core.knobs import loss_weight
from bench.core.registries import METHODS
from bench.core.taps import POOLED
from bench.methods.base import MDISTILLER, REPDISTILLER, Method, Reference
from bench.methods.losses import labeled_cross_entropy, rkd_angle, rkd_distance, similarity_preserving

RKD_CODE = "RepDistiller distiller_zoo/RKD.py"


@METHODS.register("rkd", MethodCard("relational"))
class RelationalKD(Method):
    """RKD (Park, Kim, Lu & Cho, CVPR 2019): CE + 25 * distance-wise + 50 * angle-wise Huber losses on the
    embeddings (student `embedding`, teacher `pooled`), as the paper's weights."""

    knobs = {"rkd_distance_weight": loss_weight(25.0), "rkd_angle_weight": loss_weight(50.0)}
    references = {"rkd_distance_weight": Reference(25.0, f"{RKD_CODE} w_d=25 (-b 1); {MDISTILLER} RKD.DISTANCE_WEIGHT"),
                  "rkd_angle_weight": Reference(50.0, f"{RKD_CODE} w_a=50 (-b 1); {MDISTILLER} RKD.ANGLE_WEIGHT")}
    needs_teacher = frozenset({POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "rkd_dist": float(self.hparams["rkd_distance_weight"]),
                "rkd_angle": float(self.hparams["rkd_angle_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": labeled_cross_entropy(student["logits"], labels),
            "rkd_dist": rkd_distance(student["embedding"], teacher[POOLED]),
            "rkd_angle": rkd_angle(student["embedding"], teacher[POOLED]),
        }


@METHODS.register("sp", MethodCard("relational"))
class SimilarityPreserving(Method):
    """SP (Tung & Mori, ICCV 2019): CE + 3000 * ||rownorm(S S^T) - rownorm(T T^T)||_F^2 / b^2 on the
    embeddings (3000 as RepDistiller and mdistiller). Deviation: one pair (embedding vs pooled), not the paper's
    last-stage activation maps."""

    knobs = {"sp_weight": loss_weight(3000.0)}
    references = {"sp_weight": Reference(3000.0, f"{REPDISTILLER} --distill similarity -b 3000; {MDISTILLER} "
                                                 "SP.LOSS.FEAT_WEIGHT")}
    needs_teacher = frozenset({POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def term_weights(self) -> dict[str, float]:
        return {"ce": 1.0, "sp": float(self.hparams["sp_weight"])}

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "ce": labeled_cross_entropy(student["logits"], labels),
            "sp": similarity_preserving(student["embedding"], teacher[POOLED]),
        }
