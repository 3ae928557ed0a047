"""Head students with attention over the teacher's spatial outputs: `mha` and `cbam`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.core.cards import StudentCard
from bench.core.errors import BenchError
from bench.core.knobs import size
from bench.core.names import HEAD
from bench.core.registries import STUDENTS
from bench.students.base import StudentBuilder, StudentContext
from bench.students.cbam import CBAMBlock


def as_tokens(features: torch.Tensor) -> torch.Tensor:
    """(N, L, D) tokens as they are; a conv map (N, C, H, W) becomes (N, H*W, C) tokens."""
    return features.flatten(2).transpose(1, 2) if features.dim() == 4 else features


class MHAStudent(nn.Module):
    """Reduce teacher tokens to `width`, one pre-norm self-attention + MLP block, mean-pool, project."""

    def __init__(self, input_shape: tuple[int, ...], width: int, heads: int, embed_dim: int,
                 num_classes: int) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise BenchError(f"mha reads tokens (L, D) or a feature map (C, H, W), got shape {input_shape}")
        dim = input_shape[0] if len(input_shape) == 3 else input_shape[-1]
        length = input_shape[1] * input_shape[2] if len(input_shape) == 3 else input_shape[0]
        if width % heads:
            raise BenchError(f"mha width {width} must be divisible by heads {heads}")
        self.embed_dim = embed_dim
        self.reduce = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.position = nn.Parameter(torch.zeros(1, length, width))
        self.norm1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.project = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, teacher_features: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.reduce(as_tokens(teacher_features)) + self.position
        normed = self.norm1(tokens)
        attended, attn = self.attention(normed, normed, normed, need_weights=True, average_attn_weights=False)
        tokens = tokens + attended
        tokens = tokens + self.mlp(self.norm2(tokens))
        embedding = self.project(tokens.mean(dim=1))
        return {"logits": self.classifier(embedding), "embedding": embedding, "tokens": tokens,
                "hidden.0": tokens, "attn.0": attn}


class CBAMHeadStudent(nn.Module):
    """1x1 conv down to `width` channels, stacked residual CBAM blocks, pooled and projected."""

    def __init__(self, input_shape: tuple[int, ...], width: int, blocks: int, reduction: int,
                 embed_dim: int, num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise BenchError(f"cbam reads a conv feature map (C, H, W), got shape {input_shape}")
        self.embed_dim = embed_dim
        self.reduce = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.blocks = nn.ModuleList(CBAMBlock(width, reduction) for _ in range(blocks))
        self.project = nn.Linear(width, embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.reduce(feature_map)
        outputs: dict[str, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            outputs[f"hidden.{index}"] = x
        embedding = self.project(x.mean(dim=(2, 3)))
        return {**outputs, "logits": self.classifier(embedding), "embedding": embedding, "feature_map": x}


def _build_mha(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return MHAStudent(context.head_input_shape, int(hparams["width"]), int(hparams["heads"]),
                      int(hparams["embed_dim"]), context.num_classes)


def _build_cbam(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return CBAMHeadStudent(context.head_input_shape, int(hparams["width"]), int(hparams["blocks"]),
                           int(hparams["reduction"]), int(hparams["embed_dim"]), context.num_classes)


STUDENTS.add(
    "mha",
    StudentBuilder(_build_mha, {"width": size(128, 4096, "token width (a multiple of heads)"),
                                "heads": size(4, 64), "embed_dim": size(64, help="embedding dim")},
                   provides=frozenset({"logits", "embedding", "tokens", "hidden", "attn"}),
                   input_taps=("tokens", "feature_map")),
    StudentCard(HEAD),
    description="multi-head self-attention over the teacher's patch tokens (or flattened feature map), projected",
)
STUDENTS.add(
    "cbam",
    StudentBuilder(_build_cbam, {"width": size(128, 4096), "blocks": size(2, 64), "reduction": size(8, 1024),
                                 "embed_dim": size(64, help="embedding dim")},
                   provides=frozenset({"logits", "embedding", "feature_map", "hidden"}),
                   input_taps=("feature_map",)),
    StudentCard(HEAD), description="stacked CBAM blocks (channel then spatial attention) on the teacher's feature map",
)
