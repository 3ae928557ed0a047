"""`densenet`: a small standalone DenseNet-BC (depth = 6n + 4, growth rate k) for low-resolution images."""

from __future__ import annotations

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


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k) -> BN-ReLU-3x3 conv (k); its output is concatenated to its input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def transition(in_channels: int, out_channels: int) -> nn.Module:
    """BN-ReLU-1x1 conv (compression) then 2x2 average pooling."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    """Three dense blocks of n layers with transitions (compression 0.5) between them."""

    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise BenchError(f"densenet depth must be 6n+4 (10, 16, 22, ...), got {depth}")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth
        self.stem = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        for block in range(3):
            layers: list[nn.Module] = []
            for _ in range(layers_per_block):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                layers.append(transition(channels, channels // 2))
                channels //= 2
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.embed_dim = channels
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(images)
        outputs: dict[str, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            outputs[f"hidden.{index}"] = x
        x = self.final(x)
        embedding = x.mean(dim=(2, 3))
        return {**outputs, "logits": self.classifier(embedding), "embedding": embedding, "feature_map": x}


def _build_densenet(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return DenseNet(int(hparams["depth"]), int(hparams["growth"]), context.num_classes, context.in_channels)


STUDENTS.add(
    "densenet",
    StudentBuilder(_build_densenet, {"depth": Knob(10, int, ge=10, le=200, pattern=(6, 4), help="layers: 6n+4"),
                                    "growth": size(12, 256, "growth rate k")},
                   provides=frozenset({"logits", "embedding", "feature_map", "hidden"})),
    StudentCard(STANDALONE), description="small DenseNet-BC on images (depth 6n+4, growth rate)",
)
