"""The one trial function: run an ExperimentSpec and return its RunRecord (grid and study alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from bench.data import DataConfig, DatasetSplits
from bench.images import channel_stats, to_tensor
from bench.metrics import topk_accuracy
from bench.names import HEAD, PROBE_METHOD, PROBE_REFERENCE, PROBE_STUDENT, RETRIEVAL, SPLITS, ZERO_SHOT_STUDENT
from bench.provenance import device_name, git_commit, utcnow
from bench.registries import DATASETS, STUDENTS
from bench.run.parts import build_parts
from bench.run.train import Checkpointer, TrainData, num_params, state_size_mb, train_student
from bench.run.workbench import TeacherOutputs, Workbench
from bench.spec import ExperimentSpec
from bench.store.records import EpochRecord, RunRecord
from bench.taps import POOLED


def probe_spec(teacher: str, dataset: str, data: dict) -> ExperimentSpec:
    """The teacher-reference cell of a grid: a linear probe on the teacher's features."""
    student = ZERO_SHOT_STUDENT if data.get("teacher_reference") == "zero-shot" else PROBE_STUDENT
    return ExperimentSpec.create(teacher=teacher, student=student, method=PROBE_METHOD,
                                 dataset=dataset, hparams={}, data=data, epochs=0, seed=0)


def _base_record(spec: ExperimentSpec, study: str, kind: str, bench: Workbench,
                 outputs: TeacherOutputs, trial_number: int | None, reference: str = PROBE_REFERENCE) -> RunRecord:
    return RunRecord(
        spec_key=spec.key, study=study, teacher=spec.teacher, student=spec.student,
        student_kind=kind, method=spec.method, dataset=spec.dataset, seed=spec.seed,
        epochs=spec.epochs, hparams=spec.hparams_dict, data_config=spec.data_dict, status="running",
        teacher_reference=reference, teacher_pass_s=outputs.teacher_seconds,
        cache_hits=sum(e.hit for e in outputs.events),
        cache_misses=sum(not e.hit for e in outputs.events),
        device=device_name(bench.device), torch_version=torch.__version__, git_commit=git_commit(),
        trial_number=trial_number, started_at=utcnow(),
    )


def _student_inputs(kind: str, data: DatasetSplits, outputs: TeacherOutputs,
                    input_tap: str | None = POOLED) -> dict[str, torch.Tensor]:
    """Head students read their teacher tap; standalone ones read images at their size."""
    if kind == HEAD:
        return {split: outputs.features[split][input_tap or POOLED] for split in SPLITS}
    size = data.config.student_image_size or data.native_size
    mean, std = channel_stats(data.train.images)
    return {split: to_tensor(data.split(split).images, size, mean, std) for split in SPLITS}


def run_spec(spec: ExperimentSpec, bench: Workbench, study: str, trial_number: int | None = None,
             on_epoch: Callable[[EpochRecord], None] | None = None, checkpoint: Checkpointer | None = None,
             evaluate_test: bool = True) -> RunRecord:
    """Train and score one spec; the teacher probe cell is handled here too.

    `checkpoint` resumes from / saves after each epoch; `evaluate_test=False` (search trials) never
    touches the test split.
    """
    if DATASETS.entry(spec.dataset).card.task == RETRIEVAL:  # image-text data: bench/run/retrieval.py
        from bench.run.retrieval import run_retrieval_spec

        return run_retrieval_spec(spec, bench, study, trial_number, on_epoch, checkpoint)
    data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
    outputs = bench.teacher_outputs(spec.teacher, data)
    probe = bench.probe(spec.teacher, data)
    teacher = bench.teacher(spec.teacher)
    if spec.method == PROBE_METHOD:
        return _probe_record(spec, bench, study, outputs, trial_number, data)
    entry = STUDENTS.entry(spec.student)
    hparams = spec.hparams_dict
    torch.manual_seed(spec.seed)  # initial weights depend on the spec alone, not on what this process ran before
    parts = build_parts(spec.student, spec.method, hparams, teacher, data)
    student, method = parts.student, parts.method
    outputs = bench.teacher_outputs(spec.teacher, data, parts.feature_taps)
    inputs = _student_inputs(entry.card.kind, data, outputs, parts.input_tap)
    available = {"logits": probe.logits["train"], **outputs.features["train"]}
    splits = SPLITS if evaluate_test else tuple(split for split in SPLITS if split != "test")
    train_data = TrainData(
        inputs={split: inputs[split] for split in splits},
        labels={split: torch.from_numpy(data.split(split).labels) for split in splits},
        teacher_train={name: available[name] for name in parts.teacher_targets},
    )
    record = _base_record(spec, study, entry.card.kind, bench, outputs, trial_number, probe.reference)
    result = train_student(student, method, train_data, hparams, spec.epochs, spec.seed,
                           bench.device, on_epoch, checkpoint)
    params, size_mb = num_params(student), state_size_mb(student)
    backbone_params = teacher.num_params() if entry.card.kind == HEAD else 0
    backbone_mb = state_size_mb(teacher) if entry.card.kind == HEAD else 0.0
    return replace(
        record, status="done", test_acc=result.test_acc, val_acc=result.val_acc,
        teacher_acc=probe.test_acc if evaluate_test else None,
        pct_of_teacher=100.0 * result.test_acc / probe.test_acc if result.test_acc is not None and probe.test_acc
        else None,
        params=params, method_params=method.num_params(), size_mb=size_mb,
        inference_params=params + backbone_params, inference_size_mb=size_mb + backbone_mb,
        epoch_seconds=result.epoch_seconds, train_images_per_s=result.train_images_per_s,
        peak_mem_mb=result.peak_mem_mb, finished_at=utcnow(), epoch_records=result.epochs,
        test_top5=result.test_top5,
        split_sizes=data.split_record(), skipped_images=data.skipped_images,
        resumed_from_epoch=result.resumed_from_epoch,
        kd_targets=probe.kd_targets if "logits" in parts.teacher_targets else None,  # None: no probe logits read
    )


def _probe_record(spec: ExperimentSpec, bench: Workbench, study: str, outputs: TeacherOutputs,
                  trial_number: int | None, data: DatasetSplits) -> RunRecord:
    teacher = bench.teacher(spec.teacher)
    probe = bench.probe(spec.teacher, data)
    linear_params = teacher.embed_dim * data.num_classes + data.num_classes
    probe_params = probe.head_params if probe.head_params is not None else linear_params
    probe_mb = probe_params * 4 / 1e6
    record = _base_record(spec, study, HEAD, bench, outputs, trial_number, probe.reference)
    settings = {"weight_decay": probe.weight_decay} if probe.reference == PROBE_REFERENCE else {}
    return replace(
        record, status="done", test_acc=probe.test_acc, val_acc=probe.val_acc,
        teacher_acc=probe.test_acc, pct_of_teacher=100.0, params=probe_params, method_params=0,
        size_mb=probe_mb, inference_params=teacher.num_params() + probe_params,
        inference_size_mb=state_size_mb(teacher) + probe_mb,
        hparams=settings, finished_at=utcnow(),
        test_top5=topk_accuracy(probe.logits["test"], torch.from_numpy(data.test.labels), 5),
        split_sizes=data.split_record(), skipped_images=data.skipped_images, kd_targets=probe.kd_targets,
    )
