"""The CIFAR networks of the distillation tables (RepDistiller / CRD, mdistiller) as standalone students.

Written from the papers' definitions in RepDistiller's CIFAR-100 sizes (parameter counts at 100 classes in
`PUBLISHED_PARAMS`, checked by tests/students/test_cifar.py): ResNets of He et al. 2016 (3x3 stem, three stages
of BasicBlocks, 1x1-conv projection shortcuts), `x4` with a 32-channel stem and 64/128/256 stages; wide ResNets of
Zagoruyko and Komodakis 2016 (pre-activation blocks, no dropout); VGG of Simonyan and Zisserman 2015 with batch
norm, a global average pool and one linear layer; MobileNetV2 and ShuffleNetV1/V2 in bench/students/cifar_mobile.py.
Max pools round up (`ceil_mode`), which changes nothing at 32x32 and lets smaller images through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bench.core.cards import StudentCard
from bench.core.names import STANDALONE
from bench.core.registries import STUDENTS
from bench.students.base import StudentBuilder, StudentContext
from bench.students.cifar_mobile import StagedNet, conv_bn, mobilenet_v2, shufflenet_v1, shufflenet_v2
from bench.students.resnet import CONV_OUTPUTS, BasicBlock

PUBLISHED_PARAMS = {  # millions at 100 classes, as the CIFAR-100 distillation papers list them
    "resnet8x4": 1.23, "resnet32x4": 7.43, "resnet20": 0.28, "resnet56": 0.86, "wrn-16-2": 0.70,
    "wrn-40-2": 2.26, "vgg8": 3.96, "vgg13": 9.46, "mobilenetv2": 0.81, "shufflenetv1": 0.95,
    "shufflenetv2": 1.36,
}


def cifar_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> StagedNet:
    """ResNet-(6n+2): a 3x3 stem of widths[0] channels, then n BasicBlocks per stage at widths[1:]."""
    units = (depth - 2) // 6
    channels, stages = widths[0], []
    for stage, width in enumerate(widths[1:]):
        blocks = []
        for unit in range(units):
            blocks.append(BasicBlock(channels, width, 2 if stage > 0 and unit == 0 else 1))
            channels = width
        stages.append(nn.Sequential(*blocks))
    return StagedNet(conv_bn(in_channels, widths[0], 3), stages, nn.Identity(), channels, num_classes)


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-3x3 conv twice; a 1x1 conv shortcut (from the activated input) on a change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, 3, stride, 1,
                                                                      bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_channels), nn.Conv2d(out_channels, out_channels, 3, 1, 1,
                                                                       bias=False)
        self.project = in_channels != out_channels
        self.shortcut: nn.Module = (nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if self.project
                                    else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(activated))))
        return out + self.shortcut(activated if self.project else x)


def wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int = 3) -> StagedNet:
    """WRN-depth-widen: a 16-channel 3x3 stem, three stages of (depth-4)/6 blocks at 16k/32k/64k, BN-ReLU head."""
    units = (depth - 4) // 6
    channels, stages = 16, []
    for stage, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
        blocks = []
        for unit in range(units):
            blocks.append(WideBlock(channels, width, 2 if stage > 0 and unit == 0 else 1))
            channels = width
        stages.append(nn.Sequential(*blocks))
    head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
    stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    return StagedNet(stem, stages, head, channels, num_classes)


VGG = {"vgg8": ((64,), (128,), (256,), (512,), (512,)),
       "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))}


def vgg(layers: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3) -> StagedNet:
    """VGG with BN: five blocks of 3x3 conv (with bias) + BN + ReLU, 2x2 max pool between blocks, global pool."""
    channels, stages = in_channels, []
    for index, block in enumerate(layers):
        convs: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if index else []
        for width in block:
            convs += [nn.Conv2d(channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        stages.append(nn.Sequential(*convs))
    return StagedNet(nn.Identity(), stages, nn.Identity(), channels, num_classes)


BUILDERS: dict[str, tuple[Callable[[int, int], nn.Module], str]] = {
    "resnet8x4": (lambda c, i: cifar_resnet(8, (32, 64, 128, 256), c, i), "ResNet-8 at 4x width (32-ch stem)"),
    "resnet32x4": (lambda c, i: cifar_resnet(32, (32, 64, 128, 256), c, i), "ResNet-32 at 4x width (32-ch stem)"),
    "resnet20": (lambda c, i: cifar_resnet(20, (16, 16, 32, 64), c, i), "ResNet-20 (16/32/64 channels)"),
    "resnet56": (lambda c, i: cifar_resnet(56, (16, 16, 32, 64), c, i), "ResNet-56 (16/32/64 channels)"),
    "wrn-16-2": (lambda c, i: wide_resnet(16, 2, c, i), "wide ResNet, depth 16, widen 2"),
    "wrn-40-2": (lambda c, i: wide_resnet(40, 2, c, i), "wide ResNet, depth 40, widen 2"),
    "vgg8": (lambda c, i: vgg(VGG["vgg8"], c, i), "VGG-8 with BN (one conv per block)"),
    "vgg13": (lambda c, i: vgg(VGG["vgg13"], c, i), "VGG-13 with BN"),
    "mobilenetv2": (lambda c, i: mobilenet_v2(c, i), "MobileNetV2 at width 0.5 (RepDistiller's CIFAR size)"),
    "shufflenetv1": (lambda c, i: shufflenet_v1(c, i), "ShuffleNetV1, 3 groups (240/480/960 channels)"),
    "shufflenetv2": (lambda c, i: shufflenet_v2(c, i), "ShuffleNetV2 1x (116/232/464, 1024 head)"),
}


def _builder(make: Callable[[int, int], nn.Module]) -> Callable[[StudentContext, Mapping[str, Any]], nn.Module]:
    return lambda context, hparams: make(context.num_classes, context.in_channels)


for _name, (_make, _what) in BUILDERS.items():
    STUDENTS.add(_name, StudentBuilder(_builder(_make), {}, provides=CONV_OUTPUTS), StudentCard(STANDALONE),
                 description=f"CIFAR {_what}; fixed published architecture")
