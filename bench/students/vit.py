"""`vit`: a small ViT on images, given depth/width/heads or sized by `shrink` against the teacher."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.core.cards import StudentCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, size
from bench.core.names import STANDALONE
from bench.core.registries import STUDENTS
from bench.students.base import StudentBuilder, StudentContext


class Attention(nn.Module):
    """Multi-head self-attention that also returns its attention probabilities and pre-softmax scores."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (N, heads, L, L), TinyBERT's target
        attn = scores.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, length, width)), attn, scores


class Block(nn.Module):
    """Pre-norm transformer block: attention then MLP, both residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attended, attn, scores = self.attn(self.norm1(x))
        x = x + attended
        return x + self.mlp(self.norm2(x)), attn, scores


class ViT(nn.Module):
    """Patch embedding + CLS token + learned positions, `depth` blocks, CLS embedding -> classifier."""

    def __init__(self, image_size: int, patch_size: int, depth: int, width: int, heads: int,
                 mlp_ratio: float, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if image_size % patch_size:
            raise BenchError(f"vit patch_size {patch_size} must divide the student image size {image_size}")
        if width % heads:
            raise BenchError(f"vit width {width} must be divisible by heads {heads}")
        self.embed_dim = width
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2 + 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(patches), -1, -1), patches], dim=1) + self.position
        outputs: dict[str, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            x, outputs[f"attn.{index}"], outputs[f"attn_scores.{index}"] = block(x)
            outputs[f"hidden.{index}"] = x[:, 1:]
        x = self.norm(x)
        embedding = x[:, 0]
        return {**outputs, "logits": self.classifier(embedding), "embedding": embedding, "tokens": x[:, 1:]}


def vit_params(image_size: int, patch_size: int, depth: int, width: int, mlp_ratio: float,
               num_classes: int, in_channels: int = 3) -> int:
    """Exact parameter count of `ViT` (checked against the module in the tests)."""
    hidden = int(width * mlp_ratio)
    tokens = (image_size // patch_size) ** 2 + 1
    block = 4 * width + 3 * width * width + 3 * width + width * width + width
    block += width * hidden + hidden + hidden * width + width
    stem = in_channels * patch_size**2 * width + width + width + tokens * width
    return stem + depth * block + 2 * width + width * num_classes + num_classes


def shrink_shape(context: StudentContext, hparams: Mapping[str, Any]) -> tuple[int, int]:
    """(depth, width) whose parameter count is closest to `shrink` x the teacher's, depth kept as given.

    Only the teacher's parameter count is used, so for a conv teacher (effnet-lite0) this matches the
    parameter budget, not a shape: a ViT of `depth` blocks as wide as that budget allows.
    """
    target = float(hparams["shrink"]) * context.teacher_params
    if context.teacher_params <= 0:
        raise BenchError("vit shrink needs the teacher's parameter count; give depth/width instead")
    depth, heads = int(hparams["depth"]), int(hparams["heads"])
    sizes = [heads * k for k in range(1, 4096 // heads + 1)]

    def error(width: int) -> float:
        params = vit_params(context.image_size, int(hparams["patch_size"]), depth, width,
                            float(hparams["mlp_ratio"]), context.num_classes, context.in_channels)
        return abs(math.log(params / target))

    return depth, min(sizes, key=error)


def _build_vit(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    depth, width = int(hparams["depth"]), int(hparams["width"])
    if float(hparams["shrink"]) > 0:
        depth, width = shrink_shape(context, hparams)
    return ViT(context.image_size, int(hparams["patch_size"]), depth, width, int(hparams["heads"]),
               float(hparams["mlp_ratio"]), context.num_classes, context.in_channels)


STUDENTS.add(
    "vit",
    StudentBuilder(_build_vit, {"depth": size(4, 64, "transformer blocks"), "width": size(64, 4096, "token width"),
                                "heads": size(4, 64), "patch_size": size(4, 256, "divides the student image size"),
                                "mlp_ratio": Knob(2.0, float, gt=0, le=16),
                                "shrink": Knob(0.0, float, ge=0, le=1, help="teacher params fraction; 0: off")},
                   provides=frozenset({"logits", "embedding", "tokens", "hidden", "attn", "attn_scores"})),
    StudentCard(STANDALONE),
    description="small ViT on images (depth/width/heads, or shrink: fraction of the teacher's parameters)",
)
