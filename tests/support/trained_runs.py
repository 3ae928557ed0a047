"""A tiny trained run on real images (scikit-learn digits, the embedded EfficientNet-Lite0 teacher) for the
deployable-model, export and inference-cost tests: its parts, data, teacher and the run's own student inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data.splits import DataConfig, DatasetSplits
from bench.run.context import RunContext
from bench.run.parts import RunParts, build_parts
from bench.run.run_spec import student_inputs
from bench.run.task import Inputs
from bench.run.train import TrainData, train_student
from bench.run.workbench import Workbench
from bench.teachers.base import Teacher

DIGITS = DataConfig(image_size=32, train_limit=120, val_limit=40, test_limit=48)


@dataclass
class TrainedRun:
    """What run_spec holds after training: the parts, the data and the inputs the run fed its student."""

    parts: RunParts
    teacher: Teacher
    data: DatasetSplits
    inputs: Inputs
    bench: Workbench


def trained_run(tmp_path: Path, student: str, method: str = "scratch", hparams: dict | None = None,
                config: DataConfig = DIGITS) -> TrainedRun:
    """Build and train (one epoch, CPU) a student on digits the way run_spec does."""
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    data = bench.data("digits", config)
    teacher = bench.teacher("effnet-lite0")
    hparams = {"batch_size": 32, "lr": 0.003, "weight_decay": 0.0, **(hparams or {})}
    torch.manual_seed(0)
    parts = build_parts(student, method, hparams, teacher, data)
    outputs = bench.teacher_outputs("effnet-lite0", data, parts.feature_taps)
    inputs = student_inputs(parts, data, outputs)
    labels = {split: torch.from_numpy(data.split(split).labels) for split in ("train", "val")}
    train = TrainData({split: inputs[split] for split in labels}, labels, {})
    train_student(parts.student, parts.method, train, hparams, 1, 0, bench.device)
    return TrainedRun(parts, teacher, data, inputs, bench)
