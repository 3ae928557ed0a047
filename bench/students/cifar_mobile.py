"""MobileNetV2 and ShuffleNetV1/V2 at CIFAR resolution, in the sizes of RepDistiller's CIFAR-100 tables.

Written from the papers (Sandler et al. 2018; Zhang et al. 2018; Ma et al. 2018) with the CIFAR adaptations those
tables use: MobileNetV2 at width 0.5 with a 1280-channel head and stride-1 24-channel stage; ShuffleNetV1 with
3 groups (240/480/960 channels, 4/8/4 units) and a 1x1 24-channel stem; ShuffleNetV2 1x (116/232/464, 1024 head)
with a 3x3 stride-1 stem. Registered by bench/students/cifar.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN [-> ReLU]."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (N, g*c, H, W) -> interleave the g groups."""
    n, channels, height, width = x.shape
    return x.view(n, groups, channels // groups, height, width).transpose(1, 2).reshape(n, channels, height, width)


class StagedNet(nn.Module):
    """stem -> stages -> head -> global pool -> linear; outputs logits, embedding, feature_map, hidden.<stage>."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], head: nn.Module, channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.stem, self.stages, self.head = stem, nn.ModuleList(stages), head
        self.embed_dim = channels
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(images)
        outputs: dict[str, torch.Tensor] = {}
        for index, stage in enumerate(self.stages):
            x = stage(x)
            outputs[f"hidden.{index}"] = x
        x = self.head(x)
        embedding = x.mean((2, 3))
        return {**outputs, "logits": self.classifier(embedding), "embedding": embedding, "feature_map": x}


class InvertedResidual(nn.Module):
    """1x1 expand (t) -> 3x3 depthwise -> 1x1 linear projection; identity added when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(conv_bn(in_channels, hidden, 1), conv_bn(hidden, hidden, 3, stride, hidden),
                                  conv_bn(hidden, out_channels, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # (expansion t, channels c, units n, first stride s); 24 at stride 1 for CIFAR


def mobilenet_v2(num_classes: int, in_channels: int = 3, width: float = 0.5) -> StagedNet:
    """MobileNetV2 (width 0.5 as in RepDistiller's CIFAR tables): stride-2 stem, 7 stages, 1280-channel head."""
    channels = int(32 * width)
    stem = conv_bn(in_channels, channels, 3, 2)
    stages: list[nn.Module] = []
    for expand, out, units, stride in MOBILENET_V2:
        out = int(out * width)
        blocks = []
        for unit in range(units):
            blocks.append(InvertedResidual(channels, out, stride if unit == 0 else 1, expand))
            channels = out
        stages.append(nn.Sequential(*blocks))
    head_channels = 1280 if width <= 1.0 else int(1280 * width)
    return StagedNet(stem, stages, conv_bn(channels, head_channels, 1), head_channels, num_classes)


class ShuffleUnitV1(nn.Module):
    """Grouped 1x1 -> shuffle -> 3x3 depthwise -> grouped 1x1; stride 2 concatenates a 3x3 average-pooled input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = out_channels // 4
        first_groups = 1 if in_channels == 24 else groups  # the first unit's input (the stem) is too thin to split
        self.groups, self.stride = first_groups, stride
        self.reduce = conv_bn(in_channels, mid, 1, groups=first_groups)
        self.depthwise = conv_bn(mid, mid, 3, stride, mid, relu=False)
        self.expand = conv_bn(mid, out_channels, 1, groups=groups, relu=False)
        self.shortcut: nn.Module = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.depthwise(channel_shuffle(self.reduce(x), self.groups)))
        shortcut = self.shortcut(x)
        return F.relu(torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut)


def shufflenet_v1(num_classes: int, in_channels: int = 3, groups: int = 3,
                  widths: tuple[int, ...] = (240, 480, 960), units: tuple[int, ...] = (4, 8, 4)) -> StagedNet:
    """ShuffleNetV1 (g=3) at CIFAR resolution: 1x1 24-channel stem, no max pool, three stages."""
    stem = conv_bn(in_channels, 24, 1)
    channels, stages = 24, []
    for width, count in zip(widths, units, strict=True):
        blocks = []
        for unit in range(count):
            concatenated = channels if unit == 0 else 0  # stride 2 concatenates its input: produce the rest
            blocks.append(ShuffleUnitV1(channels, width - concatenated, 2 if unit == 0 else 1, groups))
            channels = width
        stages.append(nn.Sequential(*blocks))
    return StagedNet(stem, stages, nn.Identity(), channels, num_classes)


class ShuffleUnitV2(nn.Module):
    """Channel split: half passes, half goes 1x1 -> 3x3 depthwise -> 1x1; stride 2 transforms both halves."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = out_channels // 2
        branch_in = in_channels if stride == 2 else in_channels // 2
        self.branch = nn.Sequential(conv_bn(branch_in, branch, 1), conv_bn(branch, branch, 3, stride, branch,
                                                                           relu=False), conv_bn(branch, branch, 1))
        self.side: nn.Module = nn.Identity()
        if stride == 2:
            self.side = nn.Sequential(conv_bn(in_channels, in_channels, 3, 2, in_channels, relu=False),
                                      conv_bn(in_channels, branch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            out = torch.cat([self.side(x), self.branch(x)], 1)
        else:
            kept, changed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch(changed)], 1)
        return channel_shuffle(out, 2)


def shufflenet_v2(num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (116, 232, 464),
                  units: tuple[int, ...] = (4, 8, 4), head: int = 1024) -> StagedNet:
    """ShuffleNetV2 1x at CIFAR resolution: 3x3 stride-1 24-channel stem, no max pool, 1x1 1024-channel head."""
    stem = conv_bn(in_channels, 24, 3)
    channels, stages = 24, []
    for width, count in zip(widths, units, strict=True):
        stages.append(nn.Sequential(*[ShuffleUnitV2(channels if unit == 0 else width, width, 2 if unit == 0 else 1)
                                      for unit in range(count)]))
        channels = width
    return StagedNet(stem, stages, conv_bn(channels, head, 1), head, num_classes)
