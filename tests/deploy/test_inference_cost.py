"""Inference cost: MACs from torch's counter, the timing protocol, the teacher measured once, the record's fields."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.core.spec import ExperimentSpec, probe_spec
from bench.data.splits import DataConfig
from bench.deploy import inference_cost
from bench.deploy.inference_cost import CostSettings, count_macs, measure_cost
from bench.run.context import RunContext
from bench.run.run_spec import run_spec
from bench.run.workbench import Workbench

COST_FIELDS = ("latency_ms", "throughput_ips", "macs", "teacher_latency_ms", "teacher_throughput_ips",
               "teacher_macs", "speedup")
NOISE_FIELDS = ("latency_spread", "cost_load", "teacher_latency_spread", "teacher_cost_load")


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
    teacher_passes = [shape for shape in calls if len(shape) == 3 and shape[0] == 3]  # images in, not features
    again = bench.data("digits", DataConfig(image_size=32, train_limit=60, val_limit=10, test_limit=10))
    assert bench.teacher_cost("effnet-lite0", again, retrieval=False) is first and len(teacher_passes) == 1
    assert len(calls) == 2  # the teacher pass, then its linear head alone on pooled features
    larger = bench.data("digits", DataConfig(image_size=48, train_limit=40, val_limit=10, test_limit=10))
    assert bench.teacher_cost("effnet-lite0", larger, retrieval=False) is not first and len(calls) == 4


def test_every_done_run_stores_its_cost_and_the_teacher_cell_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      one_thread: None) -> None:
    timed_images: list[tuple] = []  # every measurement that ran on images (the teacher pass or a whole model)
    real = inference_cost.measure_cost

    def counting(model, shape, device, settings=None, work_size=None):
        if len(shape) == 3 and shape[0] == 3:
            timed_images.append(type(model).__name__)
        return real(model, shape, device, settings, work_size)

    monkeypatch.setattr("bench.deploy.model.measure_cost", counting)
    monkeypatch.setattr("bench.run.cost.measure_cost", counting)
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    data = {"image_size": 32, "train_limit": 100, "val_limit": 30, "test_limit": 30}
    records = {}
    for student, hparams in (("resnet", {"depth": 8, "width": 4}), ("projection", {}), ("bottleneck", {})):
        hparams = {"batch_size": 32, "lr": 0.003, "weight_decay": 0.0, **hparams}
        spec = ExperimentSpec.create(teacher="effnet-lite0", student=student, method="kd", dataset="digits",
                                     hparams=hparams, data=data, epochs=1, seed=0)
        records[student] = run_spec(spec, bench, "cost")
    records["reference"] = run_spec(probe_spec("effnet-lite0", "digits", data), bench, "cost")
    for record in records.values():
        values = [getattr(record, name) for name in COST_FIELDS]
        assert all(value is not None and math.isfinite(value) and value > 0 for value in values), values
        assert record.speedup == pytest.approx(record.teacher_latency_ms / record.latency_ms)
        noise = [getattr(record, name) for name in NOISE_FIELDS]
        assert all(value is not None and math.isfinite(value) and value >= 0 for value in noise), noise
    teacher = records["reference"]
    # the teacher pass is timed once for the grid: the two head cells reuse it and time only their heads
    assert timed_images == ["TeacherPass", "Deployable"], timed_images  # the teacher's, then resnet whole
    assert records["resnet"].backbone_latency_ms is None and teacher.backbone_latency_ms is None
    for head in ("projection", "bottleneck"):
        passed = records[head].backbone_latency_ms
        assert passed == records["bottleneck"].backbone_latency_ms and 0 < passed < records[head].latency_ms
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


def test_a_head_cost_composed_from_the_teacher_pass_and_the_head_matches_the_whole_model_timed(
        effnet, one_thread: None) -> None:
    """The stored figure of a head student (teacher pass + head, bench/run/cost.py) is the whole deployable's: MACs
    exactly, latency and throughput within noise. Best of two alternating measurements each, so a load burst on a
    busy machine hits both sides; leaving out the backbone (a 10x smaller figure) or the head's MACs fails."""
    from bench.data.splits import DatasetSplits, load_dataset
    from bench.deploy.model import Deployable, HeadPass, Normalise, head_cost, input_shape, teacher_norm
    from bench.deploy.model import teacher_pass_cost as pass_cost

    data: DatasetSplits = load_dataset("digits", DataConfig(image_size=64, train_limit=20, val_limit=5, test_limit=5))
    head = nn.Sequential(nn.Linear(effnet.embed_dim, 512), nn.GELU(), nn.Linear(512, 10))
    student = _LogitsOf(head)
    cpu = torch.device("cpu")
    whole_model = Deployable(Normalise(teacher_norm(effnet, data)), student, effnet, "pooled").eval()
    wholes, composed = [], []
    for _ in range(2):
        wholes.append(measure_cost(whole_model, input_shape(data), cpu, work_size=64))
        teacher_pass, shape = pass_cost(effnet, data, "pooled", cpu)
        composed.append(teacher_pass.then(head_cost(HeadPass(student), shape, cpu)))
    whole = min(wholes, key=lambda cost: cost.latency_ms)
    parts = min(composed, key=lambda cost: cost.latency_ms)
    head_macs = effnet.embed_dim * 512 + 512 * 10
    assert parts.macs == pytest.approx(whole.macs, rel=1e-9) and parts.macs - teacher_pass.macs == head_macs
    assert 0.6 < parts.latency_ms / whole.latency_ms < 1.6, (parts, whole)
    assert 0.5 < parts.throughput_ips / whole.throughput_ips < 2.0, (parts, whole)


class _LogitsOf(nn.Module):
    """A head student: features -> {"logits"}."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(features)}
