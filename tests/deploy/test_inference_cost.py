"""Inference cost: MACs from torch's counter, the timing protocol, the teacher measured once, the record's fields."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.core.spec import ExperimentSpec
from bench.data.splits import DataConfig
from bench.deploy import inference_cost
from bench.deploy.inference_cost import CostSettings, count_macs, measure_cost
from bench.run.run_spec import probe_spec, run_spec
from bench.run.workbench import RunContext, Workbench

COST_FIELDS = ("latency_ms", "throughput_ips", "macs", "teacher_latency_ms", "teacher_throughput_ips",
               "teacher_macs", "speedup")


class Counting(nn.Module):
    """A conv net that counts its forward calls and the batch sizes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.linear = nn.Linear(8 * 8 * 8, 4)
        self.batches: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        return self.linear(self.conv(images).flatten(1))


def test_macs_per_image_are_torch_counter_flops_halved_and_do_not_grow_with_the_batch() -> None:
    model = Counting()
    conv, linear = 8 * 3 * 3 * 3 * 8 * 8, 8 * 8 * 8 * 4  # MACs of one image: out channels x kernel x positions
    assert count_macs(model, torch.rand(1, 3, 8, 8)) == conv + linear
    assert count_macs(model, torch.rand(5, 3, 8, 8)) == conv + linear


def test_latency_is_batch_one_after_warmup_and_throughput_a_larger_batch() -> None:
    model, settings = Counting(), CostSettings(runs=5, warmup=2, batch=6, batches=3)
    cost = measure_cost(model, (3, 8, 8), torch.device("cpu"), settings)
    assert model.batches == [1] * (2 + 5) + [6] * (1 + 3) + [1]  # warm-up, timed, large warm-up, timed, MAC count
    assert cost.latency_ms > 0 and cost.throughput_ips > 0 and math.isfinite(cost.throughput_ips)
    assert not torch.is_inference_mode_enabled()


def test_the_teacher_is_measured_once_per_teacher_and_input_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 one_thread: None) -> None:
    calls: list[tuple] = []
    real = inference_cost.measure_cost

    def counting(model, shape, device, settings=None, work_size=None):
        calls.append(shape)
        return real(model, shape, device, CostSettings(runs=1, warmup=0, batch=2, batches=1), work_size)

    monkeypatch.setattr("bench.deploy.model.measure_cost", counting)
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    small = bench.data("digits", DataConfig(image_size=32, train_limit=40, val_limit=10, test_limit=10))
    first = bench.teacher_cost("effnet-lite0", small, retrieval=False)
    again = bench.data("digits", DataConfig(image_size=32, train_limit=60, val_limit=10, test_limit=10))
    assert bench.teacher_cost("effnet-lite0", again, retrieval=False) is first and len(calls) == 1
    larger = bench.data("digits", DataConfig(image_size=48, train_limit=40, val_limit=10, test_limit=10))
    assert bench.teacher_cost("effnet-lite0", larger, retrieval=False) is not first and len(calls) == 2


def test_every_done_run_stores_its_cost_and_the_teacher_cell_its_own(tmp_path: Path, one_thread: None) -> None:
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    data = {"image_size": 32, "train_limit": 100, "val_limit": 30, "test_limit": 30}
    records = {}
    for student, hparams in (("resnet", {"depth": 8, "width": 4}), ("projection", {})):
        hparams = {"batch_size": 32, "lr": 0.003, "weight_decay": 0.0, **hparams}
        spec = ExperimentSpec.create(teacher="effnet-lite0", student=student, method="kd", dataset="digits",
                                     hparams=hparams, data=data, epochs=1, seed=0)
        records[student] = run_spec(spec, bench, "cost")
    records["reference"] = run_spec(probe_spec("effnet-lite0", "digits", data), bench, "cost")
    for record in records.values():
        values = [getattr(record, name) for name in COST_FIELDS]
        assert all(value is not None and math.isfinite(value) and value > 0 for value in values), values
        assert record.speedup == pytest.approx(record.teacher_latency_ms / record.latency_ms)
    teacher = records["reference"]
    assert (teacher.latency_ms, teacher.macs, teacher.speedup) == (teacher.teacher_latency_ms, teacher.teacher_macs,
                                                                   1.0)
    assert records["resnet"].teacher_latency_ms == teacher.latency_ms  # measured once, shared by the grid
    assert records["resnet"].macs < teacher.macs < records["projection"].macs  # a head carries its backbone


def test_the_cpu_throughput_batch_shrinks_for_models_working_at_large_sizes() -> None:
    """On the CPU, activations live in host RAM: a model that works at 224 px is timed on 32 images, not 64 (a
    grid over 224 px images peaked over its memory budget before); small inputs and CUDA keep the full batch."""
    from bench.deploy.inference_cost import CostSettings, throughput_batch

    settings = CostSettings()
    assert throughput_batch(settings, torch.device("cpu"), 224) == 32
    assert throughput_batch(settings, torch.device("cpu"), 64) == settings.batch == 64
    assert throughput_batch(settings, torch.device("cuda"), 224) == 64
    seen: list[int] = []

    class Probe(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(len(images))
            return images.mean(dim=(1, 2, 3))

    cost = measure_cost(Probe(), (3, 28, 28), torch.device("cpu"), CostSettings(runs=1, warmup=0, batches=1),
                        work_size=224)
    assert max(seen) == 32 and cost.throughput_ips > 0
