"""The one run pipeline: run an ExperimentSpec and return its RunRecord (grid and study, every dataset task).

run_spec loads the data and the teacher, builds student and method (bench/run/parts.py), trains, and
assembles the record (bench/run/record.py); what depends on the dataset's task (its reference, targets,
val score and test metrics) comes from the task module its card names (classification or retrieval).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from bench.core.errors import BenchError
from bench.core.names import (
    CLASSIFICATION,
    HEAD,
    REFERENCE_METHODS,
    RETRIEVAL,
    SPLITS,
)
from bench.core.registries import DATASETS, METHODS
from bench.core.spec import ExperimentSpec
from bench.core.taps import LOGITS
from bench.data.splits import DataConfig, DatasetSplits
from bench.run.classification import ClassificationTask
from bench.run.cost import reference_cost_fields, student_cost_fields
from bench.run.fast import TrainOptions
from bench.run.kept import Keep, reference_kept, student_kept
from bench.run.loader import ImageInputs
from bench.run.parts import RunParts, build_parts
from bench.run.record import finished_record, started_record, trained_fields
from bench.run.retrieval import RetrievalTask
from bench.run.task import Inputs, TaskFactory
from bench.run.train import Checkpointer, TrainData, TrainResult, train_student
from bench.run.views import ViewFeed
from bench.run.workbench import Workbench
from bench.store.records import EpochRecord, RunRecord
from bench.teacher_outputs.features import TeacherOutputs
from bench.teacher_outputs.views import make_labeller, reference_targets
from bench.teachers.base import Teacher

TASKS: dict[str, TaskFactory] = {CLASSIFICATION: ClassificationTask.prepare, RETRIEVAL: RetrievalTask.prepare}


def require_fitting_method(method: str, dataset: str, task: str) -> None:
    """Retrieval datasets train joint-space methods (by their card), classification datasets the others."""
    if METHODS.entry(method).card.joint_space != (task == RETRIEVAL):
        raise BenchError(f"method {method!r} does not fit dataset {dataset!r}: image-text datasets take the "
                         "joint-space methods (joint-cosine, joint-contrastive), classification datasets the others")


def student_inputs(parts: RunParts, data: DatasetSplits, outputs: TeacherOutputs) -> Inputs:
    """Head students read their teacher tap; standalone ones read their split's uint8 images batch by batch at
    their size (bench/run/loader.py: never the whole split as float)."""
    if parts.input_tap is not None:
        if data.config.augment != "none" and data.config.teacher_views == "fixed":
            raise BenchError(f"data.augment {data.config.augment!r} applies to standalone students; this student "
                             f"reads the teacher's {parts.input_tap!r} features: set augment: none or teacher_views: "
                             "cached for it")
        return {split: outputs.features[split][parts.input_tap] for split in SPLITS}
    size = data.config.student_image_size or data.native_size
    mean, std = data.train_channel_stats
    return {split: ImageInputs(data.split(split).images, size, mean, std) for split in SPLITS}


def view_feed(bench: Workbench, spec: ExperimentSpec, parts: RunParts, data: DatasetSplits, task: object,
              train_data: TrainData) -> ViewFeed | None:
    """data.teacher_views cached/online: the feed of views and their teacher targets (None for fixed)."""
    config = data.config
    if config.teacher_views == "fixed":
        return None
    from bench.run.parts import masked_train_labels

    reference = getattr(task, "finetune", None) if config.teacher_reference == "finetune" else task.probe  # type: ignore[attr-defined]
    labeller = make_labeller(bench.teacher(spec.teacher), data, reference)
    student = train_data.inputs["train"] if isinstance(train_data.inputs["train"], ImageInputs) else None
    size = config.student_image_size or data.native_size
    feed = ViewFeed(config.teacher_views, config.augment, data.train.images, masked_train_labels(data), student,
                    parts.input_tap, tuple(name for name in parts.teacher_targets), spec.seed, size,
                    rows=student.rows if student is not None else None,
                    kd_targets=reference_targets(labeller.reference))
    if config.teacher_views == "online":
        return replace(feed, labeller=labeller)
    taps = [*parts.teacher_targets, *([parts.input_tap, LOGITS] if parts.input_tap is not None else [])]  # a head
    # student's scratch and kd runs share one entry
    return replace(feed, cache=bench.view_cache(labeller, data, taps, size))


@dataclass(frozen=True)
class PreparedRun:
    """A student cell ready to train: its parts, data, task, inputs and started record (see prepare_run)."""

    spec: ExperimentSpec
    parts: RunParts
    data: DatasetSplits
    teacher: Teacher
    task: Any
    task_name: str
    inputs: Inputs
    train_data: TrainData
    views: ViewFeed | None
    started: RunRecord

    @property
    def options(self) -> TrainOptions:
        return TrainOptions.from_config(self.data.config)

    def val_score(self) -> Callable[[], float] | None:
        return self.task.val_score(self.parts, self.inputs)


def prepare_run(spec: ExperimentSpec, bench: Workbench, study: str, trial_number: int | None = None,
                evaluate_test: bool = True) -> PreparedRun:
    """Data, teacher outputs, student and method of a student cell, built as every run builds them (seeded by the
    spec alone), and its started record: what train_student or a bundle (bench/run/run_bundle.py) trains."""
    task_name = DATASETS.entry(spec.dataset).card.task
    require_fitting_method(spec.method, spec.dataset, task_name)
    data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
    teacher = bench.teacher(spec.teacher)
    task = TASKS[task_name](bench, spec, data, teacher)
    torch.manual_seed(spec.seed)  # initial weights depend on the spec alone, not on what this process ran before
    parts = build_parts(spec.student, spec.method, spec.hparams_dict, teacher, data)
    outputs = bench.teacher_outputs(spec.teacher, data, parts.feature_taps)
    inputs = student_inputs(parts, data, outputs)
    train_data = task.train_data(parts, outputs, inputs, evaluate_test)
    views = view_feed(bench, spec, parts, data, task, train_data)
    train_data = replace(train_data, views=views)
    started = started_record(spec, study, parts.kind, bench, outputs, trial_number, task.reference)
    return PreparedRun(spec, parts, data, teacher, task, task_name, inputs, train_data, views, started)


def finish_run(bench: Workbench, run: PreparedRun, result: TrainResult, evaluate_test: bool = True,
               keep: Keep | None = None) -> RunRecord:
    """The done record of a trained student cell (and its artifact through `keep`), however it was trained."""
    spec, parts, views = run.spec, run.parts, run.views
    joint_space = METHODS.entry(spec.method).card.joint_space
    fields = {**trained_fields(parts.student, parts.method, run.teacher, parts.kind, joint_space, result),
              **run.task.result_fields(parts, run.inputs, result, evaluate_test),
              **student_cost_fields(bench, parts, spec.teacher, run.data, run.task_name),
              "teacher_view_s": views.teacher_seconds if views is not None else 0.0,
              "teacher_view_images": views.teacher_images if views is not None else 0}
    if views is not None and "logits" in parts.teacher_targets:
        fields["kd_targets"] = views.kd_targets
    if keep is not None:  # the weights test_acc was computed with: the last epoch's
        keep(student_kept(spec, parts, run.data, joint_space))
    return finished_record(run.started, run.data, fields)


def run_spec(spec: ExperimentSpec, bench: Workbench, study: str, trial_number: int | None = None,
             on_epoch: Callable[[EpochRecord], None] | None = None, checkpoint: Checkpointer | None = None,
             evaluate_test: bool = True, keep: Keep | None = None) -> RunRecord:
    """Train and score one spec; the teacher-reference cell is handled here too.

    `checkpoint` resumes from / saves after each epoch; `evaluate_test=False` (search trials) never
    scores the student on the test split; `keep` receives the done run's inference tensors (its artifact).
    """
    if spec.method in REFERENCE_METHODS:
        task_name = DATASETS.entry(spec.dataset).card.task
        data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
        task = TASKS[task_name](bench, spec, data, bench.teacher(spec.teacher))
        started = started_record(spec, study, HEAD, bench, task.outputs, trial_number, task.reference)
        record = finished_record(started, data, {**task.reference_fields(),
                                                 **reference_cost_fields(bench, spec.teacher, data, task_name)})
        if keep is not None:
            keep(reference_kept(spec, task))
        return record
    run = prepare_run(spec, bench, study, trial_number, evaluate_test)
    result = train_student(run.parts.student, run.parts.method, run.train_data, spec.hparams_dict, spec.epochs,
                           spec.seed, bench.device, on_epoch, checkpoint, val_score=run.val_score(),
                           options=run.options)
    return finish_run(bench, run, result, evaluate_test, keep)
