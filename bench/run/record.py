"""The result record of a run, assembled in one place for every dataset task and for the reference cell."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from bench.core.names import HEAD
from bench.core.spec import ExperimentSpec
from bench.data.splits import DatasetSplits
from bench.methods.base import Method
from bench.run.provenance import device_name, git_commit, utcnow
from bench.run.train import TrainResult, num_params, state_size_mb
from bench.run.workbench import Workbench
from bench.store.records import RunRecord
from bench.teacher_outputs.features import TeacherOutputs
from bench.teachers.base import Teacher


def started_record(spec: ExperimentSpec, study: str, student_kind: str, bench: Workbench,
                   outputs: TeacherOutputs, trial_number: int | None, reference: str) -> RunRecord:
    """The fields known when a run starts: the spec, where it runs, the teacher pass and its cache events."""
    return RunRecord(
        spec_key=spec.key, study=study, teacher=spec.teacher, student=spec.student,
        student_kind=student_kind, method=spec.method, dataset=spec.dataset, seed=spec.seed,
        epochs=spec.epochs, hparams=spec.hparams_dict, data_config=spec.data_dict, status="running",
        teacher_reference=reference, teacher_pass_s=outputs.teacher_seconds,
        cache_hits=sum(e.hit for e in outputs.events),
        cache_misses=sum(not e.hit for e in outputs.events),
        device=device_name(bench.device), torch_version=torch.__version__, git_commit=git_commit(),
        threads=torch.get_num_threads(), trial_number=trial_number, started_at=utcnow(),
    )


def trained_fields(student: nn.Module, method: Method, teacher: Teacher, student_kind: str,
                   joint_space: bool, result: TrainResult) -> dict[str, Any]:
    """Sizes and training measurements of a trained student.

    At inference a head student still needs the teacher backbone, and a joint-space method's projection is part
    of the model (it maps the student into the joint space); any other method is used in training only.
    """
    params, size_mb = num_params(student), state_size_mb(student)
    backbone_params = teacher.num_params() if student_kind == HEAD else 0
    backbone_mb = state_size_mb(teacher) if student_kind == HEAD else 0.0
    method_params = method.num_params()
    kept_params, kept_mb = (method_params, state_size_mb(method)) if joint_space else (0, 0.0)
    return {
        "params": params, "method_params": method_params, "size_mb": size_mb,
        "inference_params": params + kept_params + backbone_params,
        "inference_size_mb": size_mb + kept_mb + backbone_mb,
        "epoch_seconds": result.epoch_seconds, "train_images_per_s": result.train_images_per_s,
        "peak_mem_mb": result.peak_mem_mb, "epoch_records": result.epochs,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_steps": result.train_steps, "images_seen": result.images_seen, "bundle_size": result.bundle_size,
    }


def finished_record(started: RunRecord, data: DatasetSplits, fields: Mapping[str, Any]) -> RunRecord:
    """The done record: what was known at the start, the data's split sizes, and the run's result fields."""
    return replace(started, status="done", split_sizes=data.split_record(), skipped_images=data.skipped_images,
                   finished_at=utcnow(), **fields)
