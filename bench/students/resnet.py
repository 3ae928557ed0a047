"""`resnet` and `cbam-resnet`: small standalone CIFAR-style ResNets (depth = 6n + 2) for low-res images."""

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
from bench.students.cbam import CBAM


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cbam: bool = False) -> None:
        super().__init__()
        self.attention: nn.Module = CBAM(out_channels) if cbam else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Three stages of BasicBlocks (width, 2*width, 4*width), global pooling, linear classifier."""

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3,
                 cbam: bool = False) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise BenchError(f"resnet depth must be 6n+2 (8, 14, 20, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)
        )
        stages: list[nn.Module] = []
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            layers: list[nn.Module] = []
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, stage_width, stride, cbam))
                channels = stage_width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = channels
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(images)
        outputs: dict[str, torch.Tensor] = {}
        for index, stage in enumerate(self.stages):
            x = stage(x)
            outputs[f"hidden.{index}"] = x
        embedding = self.pool(x).flatten(1)
        return {**outputs, "logits": self.classifier(embedding), "embedding": embedding, "feature_map": x}


def _build_resnet(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return ResNet(int(hparams["depth"]), int(hparams["width"]), context.num_classes,
                  context.in_channels)


def _build_cbam_resnet(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
    return ResNet(int(hparams["depth"]), int(hparams["width"]), context.num_classes,
                  context.in_channels, cbam=True)


RESNET_KNOBS = {"depth": Knob(8, int, ge=8, le=200, pattern=(6, 2), help="layers: 6n+2 (8, 14, 20, ...)"),
                "width": size(16, 1024, "channels of the first stage (x2, x4 after)")}
CONV_OUTPUTS = frozenset({"logits", "embedding", "feature_map", "hidden"})
STUDENTS.add(
    "resnet", StudentBuilder(_build_resnet, RESNET_KNOBS, provides=CONV_OUTPUTS), StudentCard(STANDALONE),
    description="small CIFAR-style ResNet on images (depth 6n+2, base width)",
)
STUDENTS.add(
    "cbam-resnet", StudentBuilder(_build_cbam_resnet, RESNET_KNOBS, provides=CONV_OUTPUTS),
    StudentCard(STANDALONE), description="CIFAR-style ResNet whose blocks refine features with CBAM attention",
)
