"""Inference cost of a deployable model on a device: batch-1 latency, throughput at a larger batch, MACs per image.

Every figure is of the whole deployable module (bench/deploy/model.py: resize + normalise, a head student's teacher
backbone, the student, a joint-space projection) in float32 eval mode under torch.inference_mode, on random
[0, 1] images of the dataset's native size; CUDA timings are bracketed by torch.cuda.synchronize. The teacher's
figures are of its own deployable form (bench/deploy/model.py `teacher_cost`): the frozen teacher with its
preprocessing and a linear head of the reference probe's shape on its pooled features (classification), or the
teacher's image embedding alone (retrieval): a head's weights do not change its cost, so none need be kept.

A model that reads a teacher tap (a head student, the teacher's own head) is timed in two parts that add up to
the whole (`InferenceCost.then`): the teacher pass (resize + normalise + backbone up to the tap), measured once per
teacher, tap, input size and device and shared by every head of a grid, then the head alone on random features of
the tap's shape. A grid used to re-time the whole teacher for every head cell (3.5-5x the head's own training).
"""

from __future__ import annotations

import os
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
    """One model's cost: median batch-1 latency (ms), images/s at a larger batch, MACs per image; the latency's
    spread (interquartile range / median of the batch-1 runs) and the machine's load when it was measured (1-minute
    load average per CPU: 1.0 = every CPU busy), so that a figure taken on a loaded machine is never read as fact."""

    latency_ms: float
    throughput_ips: float
    macs: float
    latency_spread: float = 0.0
    load: float = 0.0

    def then(self, head: InferenceCost) -> InferenceCost:
        """This model followed by `head` (a teacher pass then the head that reads it): latencies, per-image times
        and MACs add; the spread is the two interquartile ranges added (an upper bound) over the summed median."""
        latency = self.latency_ms + head.latency_ms
        iqr = self.latency_spread * self.latency_ms + head.latency_spread * head.latency_ms
        return InferenceCost(latency_ms=latency, throughput_ips=1.0 / (1.0 / self.throughput_ips
                                                                        + 1.0 / head.throughput_ips),
                             macs=self.macs + head.macs, latency_spread=iqr / latency if latency > 0 else 0.0,
                             load=max(self.load, head.load))


def machine_load() -> float:
    """The 1-minute load average per CPU of the machine (0.0 where the OS does not say)."""
    if not hasattr(os, "getloadavg"):
        return 0.0
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def relative_spread(latencies: list[float]) -> float:
    """Interquartile range over median of the timed runs: 0.1 = the middle half lies within 10% of the median."""
    if len(latencies) < 4:
        return 0.0
    low, middle, high = statistics.quantiles(latencies, n=4)
    return (high - low) / middle if middle > 0 else 0.0


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

    if device.type != "cpu" or work_size < 1:  # < 1: a head's features, no image side
        return settings.batch
    return min(settings.batch, teacher_batch_size(device, work_size))


def measure_cost(model: nn.Module, image_shape: tuple[int, int, int], device: torch.device,
                 settings: CostSettings | None = None, work_size: int | None = None) -> InferenceCost:
    """Latency, throughput and MACs of `model` on (N, *image_shape) inputs in [0, 1], on `device`; `work_size`
    is the largest image side the model resizes to inside (a head student's or teacher's input size); a head's
    input is its teacher tap's shape, (C,) or (C, H, W) or (tokens, C)."""
    settings = settings or CostSettings.for_device(device)
    model = model.eval().to(device)
    generator = torch.Generator().manual_seed(0)
    one = torch.rand(1, *image_shape, generator=generator).to(device)
    load = machine_load()
    batch = throughput_batch(settings, device, max(0, *image_shape[1:], work_size or 0))
    many = torch.rand(batch, *image_shape, generator=generator).to(device)
    with torch.inference_mode():
        for _ in range(settings.warmup):
            model(one)
        latencies = [_timed(lambda: model(one), device) for _ in range(settings.runs)]
        model(many)  # the large batch warms its own kernels and allocations once
        seconds = sum(_timed(lambda: model(many), device) for _ in range(settings.batches))
    return InferenceCost(latency_ms=1000.0 * statistics.median(latencies),
                         throughput_ips=batch * settings.batches / seconds,
                         macs=count_macs(model, one), latency_spread=relative_spread(latencies),
                         load=max(load, machine_load()))


def cost_fields(student: InferenceCost, teacher: InferenceCost,
                backbone: InferenceCost | None = None) -> dict[str, float | None]:
    """The RunRecord cost fields: the student's, the teacher's, the speed-up (teacher ms / student ms), each
    latency's spread and load, and for a head student the teacher pass (`backbone`) its latency includes."""
    return {"latency_ms": student.latency_ms, "throughput_ips": student.throughput_ips, "macs": student.macs,
            "teacher_latency_ms": teacher.latency_ms, "teacher_throughput_ips": teacher.throughput_ips,
            "teacher_macs": teacher.macs, "speedup": teacher.latency_ms / student.latency_ms,
            "latency_spread": student.latency_spread, "cost_load": student.load,
            "teacher_latency_spread": teacher.latency_spread, "teacher_cost_load": teacher.load,
            "backbone_latency_ms": backbone.latency_ms if backbone is not None else None}
