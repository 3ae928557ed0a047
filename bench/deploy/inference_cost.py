"""Inference cost of a deployable model on a device: batch-1 latency, throughput at a larger batch, MACs per image.

Every figure is of the whole deployable module (bench/deploy/model.py: resize + normalise, a head student's teacher
backbone, the student, a joint-space projection) in float32 eval mode under torch.inference_mode, on random
[0, 1] images of the dataset's native size; CUDA timings are bracketed by torch.cuda.synchronize. The teacher's
figures are of its own deployable form (bench/deploy/model.py `teacher_cost`): the frozen teacher with its
preprocessing and a linear head of the reference probe's shape on its pooled features (classification), or the
teacher's image embedding alone (retrieval): a head's weights do not change its cost, so none need be kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class CostSettings:
    """How many runs to time: `warmup` untimed, then `runs` batch-1 timings (median) and `batches` at `batch`."""

    runs: int = 20
    warmup: int = 3
    batch: int = 64
    batches: int = 2

    @classmethod
    def for_device(cls, device: torch.device) -> CostSettings:
        """Few runs on the CPU (each costs milliseconds), more on CUDA where a run is cheap and noisier."""
        return cls() if device.type == "cpu" else cls(runs=50, warmup=10, batch=64, batches=10)


@dataclass(frozen=True)
class InferenceCost:
    """One model's cost: median batch-1 latency (ms), images/s at a larger batch, MACs per image."""

    latency_ms: float
    throughput_ips: float
    macs: float


def count_macs(model: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates per image, from torch's FlopCounterMode: its FLOPs count a MAC as 2, so FLOPs / 2.

    It counts matrix products and convolutions (linear, conv, matmul, bmm, attention), not elementwise work,
    pooling or the resize: those are small beside the products in every student and teacher here.
    """
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example)
    return counter.get_total_flops() / 2.0 / len(example)


def _timed(call: Callable[[], object], device: torch.device) -> float:
    """Seconds one call takes (CUDA work waited for on both sides)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def throughput_batch(settings: CostSettings, device: torch.device, work_size: int) -> int:
    """The throughput batch: `settings.batch`, fewer on the CPU when the model works at a large size (its
    activations live in host RAM there: the teacher pass's pixel budget, bench/teacher_outputs/features.py)."""
    from bench.teacher_outputs.features import teacher_batch_size

    return settings.batch if device.type != "cpu" else min(settings.batch, teacher_batch_size(device, work_size))


def measure_cost(model: nn.Module, image_shape: tuple[int, int, int], device: torch.device,
                 settings: CostSettings | None = None, work_size: int | None = None) -> InferenceCost:
    """Latency, throughput and MACs of `model` on (N, *image_shape) images in [0, 1], on `device`; `work_size`
    is the largest image side the model resizes to inside (a head student's or teacher's input size)."""
    settings = settings or CostSettings.for_device(device)
    model = model.eval().to(device)
    generator = torch.Generator().manual_seed(0)
    one = torch.rand(1, *image_shape, generator=generator).to(device)
    batch = throughput_batch(settings, device, max(*image_shape[1:], work_size or 0))
    many = torch.rand(batch, *image_shape, generator=generator).to(device)
    with torch.inference_mode():
        for _ in range(settings.warmup):
            model(one)
        latencies = [_timed(lambda: model(one), device) for _ in range(settings.runs)]
        model(many)  # the large batch warms its own kernels and allocations once
        seconds = sum(_timed(lambda: model(many), device) for _ in range(settings.batches))
    return InferenceCost(latency_ms=1000.0 * statistics.median(latencies),
                         throughput_ips=batch * settings.batches / seconds,
                         macs=count_macs(model, one))


def cost_fields(student: InferenceCost, teacher: InferenceCost) -> dict[str, float]:
    """The RunRecord cost fields: the student's, the teacher's, and the speed-up (teacher ms / student ms)."""
    return {"latency_ms": student.latency_ms, "throughput_ips": student.throughput_ips, "macs": student.macs,
            "teacher_latency_ms": teacher.latency_ms, "teacher_throughput_ips": teacher.throughput_ips,
            "teacher_macs": teacher.macs, "speedup": teacher.latency_ms / student.latency_ms}
