"""What a dataset task adds to the one run pipeline: its reference, training data, val score and test metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from bench.core.spec import ExperimentSpec
from bench.data.splits import DatasetSplits
from bench.run.loader import ImageInputs
from bench.run.parts import RunParts
from bench.run.train import TrainData, TrainResult
from bench.run.workbench import Workbench
from bench.teacher_outputs.features import TeacherOutputs
from bench.teachers.base import Teacher

Inputs = dict[str, torch.Tensor | ImageInputs]  # split -> student inputs (teacher tap or images), by run_spec


class Task(Protocol):
    """One run's task part (bench/run/classification.py, bench/run/retrieval.py), built by its `prepare`."""

    @property
    def reference(self) -> str:
        """runs.teacher_reference: what the teacher's own score is measured with."""
        ...

    @property
    def outputs(self) -> TeacherOutputs:
        """The teacher outputs the reference read (the reference cell records their cache events)."""
        ...

    def reference_fields(self) -> dict[str, Any]:
        """The reference cell's result fields: the teacher alone, with no student."""
        ...

    def train_data(self, parts: RunParts, outputs: TeacherOutputs, inputs: Inputs, evaluate_test: bool) -> TrainData:
        """Student inputs, labels and teacher targets that train_student reads."""
        ...

    def val_score(self, parts: RunParts, inputs: Inputs) -> Callable[[], float] | None:
        """The score of each epoch on val; None = top-1 accuracy of the student's logits."""
        ...

    def result_fields(self, parts: RunParts, inputs: Inputs, result: TrainResult,
                      evaluate_test: bool) -> dict[str, Any]:
        """Val and test metrics of the trained student and its share of the teacher's score."""
        ...


TaskFactory = Callable[[Workbench, ExperimentSpec, DatasetSplits, Teacher], Task]  # a task's `prepare`
