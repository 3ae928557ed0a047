"""Speed settings of student training (DataConfig knobs): bf16 autocast, channels_last, compile, resident tensors.

Only `precision: bf16` and `augment` change results (beyond float noise); channels_last, compile, loader workers
and device-resident teacher outputs are pure speed settings. The same code runs on CUDA and on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

RESIDENT_SHARE = 0.5  # cached teacher outputs move to the GPU once if they take at most this share of free memory


@dataclass(frozen=True)
class TrainOptions:
    """How train_student runs; the defaults are the plain fp32 loop of before (bit-identical results)."""

    precision: str = "fp32"  # fp32 | bf16 (autocast; fp32 master weights and optimizer state)
    channels_last: str = "auto"  # auto (on for conv students on CUDA) | on | off
    compile: bool = False  # torch.compile the student's training forward
    loader_workers: int | None = None  # image students' DataLoader workers; None: 0 on the CPU, some on CUDA
    resident_features: str = "auto"  # auto (cached teacher outputs on the GPU when they fit) | off
    augment: str = "none"  # none | flip | crop-flip | crop-pad-flip (standalone students; targets: un-augmented)

    @classmethod
    def from_config(cls, config: Any) -> TrainOptions:
        """The options a DataConfig (or anything with these attributes) asks for."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__ if hasattr(config, name)})

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """bf16 autocast on `device` when precision is bf16, else a no-op context."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def use_channels_last(self, student: nn.Module, device: torch.device) -> bool:
        """channels_last when asked, or by default for conv students on CUDA (never for students without convs)."""
        has_conv = any(isinstance(module, nn.Conv2d) for module in student.modules())
        return has_conv and (self.channels_last == "on" or (self.channels_last == "auto" and device.type == "cuda"))


def to_memory_format(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """4-D image batches in channels_last when asked; anything else unchanged."""
    return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.ndim == 4 else batch


def float_outputs(outputs: Any) -> Any:
    """The student's outputs with floating tensors in fp32, so a method's loss maths runs in fp32 under bf16."""
    if isinstance(outputs, Mapping):
        return {name: float_outputs(value) for name, value in outputs.items()}
    if isinstance(outputs, list | tuple):
        return type(outputs)(float_outputs(value) for value in outputs)
    if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
        return outputs.float()
    return outputs


def compiled(student: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile(student) when enabled (it shares the student's parameters; state dicts keep their keys)."""
    return torch.compile(student) if enabled else student  # type: ignore[return-value]


def fits_on_device(nbytes: int, device: torch.device, share: float = RESIDENT_SHARE,
                   free_bytes: int | None = None) -> bool:
    """Whether `nbytes` should live on `device`: CUDA only, and at most `share` of its free memory.

    On the CPU it is False: the tensors are already there (nothing to move). `free_bytes` overrides the query.
    """
    if device.type != "cuda":
        return False
    free = free_bytes if free_bytes is not None else torch.cuda.mem_get_info(device)[0]
    return nbytes <= share * free


def resident(tensors: Mapping[str, torch.Tensor], device: torch.device, mode: str,
             free_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """The tensors moved to `device` once, all together, when `mode` is auto and they fit; else as they are."""
    total = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    if mode != "auto" or not fits_on_device(total, device, free_bytes=free_bytes):
        return dict(tensors)
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def rows_on(tensor: torch.Tensor, index: torch.Tensor, device_index: torch.Tensor,
            device: torch.device) -> torch.Tensor:
    """tensor[index] on `device`: gathered there when the tensor is resident, else gathered here and copied."""
    if tensor.device == device_index.device:
        return tensor[device_index]
    return tensor[index].to(device, non_blocking=True)
