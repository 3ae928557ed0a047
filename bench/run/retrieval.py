"""Image-text runs (COCO captions): students learn the teacher's joint space; scored by retrieval recall.

Head students read the teacher's `pooled` features, standalone students read images; a joint-space
method maps the student embedding into the space of the teacher's `image_embed`, where test images
are ranked against the teacher's `encode_text` of every test caption (and the reverse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from bench.data import DataConfig, DatasetSplits, Split
from bench.errors import BenchError
from bench.images import channel_stats, to_tensor
from bench.methods.base import MethodContext
from bench.metrics import flatten_captions, retrieval_recalls
from bench.names import HEAD, JOINT_SPACE_REFERENCE, SPLITS
from bench.provenance import utcnow
from bench.registries import METHODS, STUDENTS
from bench.run.train import Checkpointer, TrainData, num_params, state_size_mb, train_student
from bench.run.workbench import TeacherOutputs, Workbench
from bench.spec import ExperimentSpec
from bench.store.records import EpochRecord, RunRecord
from bench.students.base import StudentContext
from bench.taps import IMAGE_EMBED, POOLED, TEXT_EMBED
from bench.teachers.base import Teacher

JOINT_TAPS = (IMAGE_EMBED, POOLED)


TEXT_BATCH = 256


def require_image_text(teacher: Teacher, dataset: str) -> None:
    """Image-text datasets need a teacher with a joint space (`modality = "image-text"`)."""
    if getattr(teacher, "modality", "image") != "image-text" or not hasattr(teacher, "encode_text"):
        raise BenchError(f"dataset {dataset!r} needs an image-text teacher (CLIP, BLIP); {teacher.name!r} is not one")


@torch.inference_mode()
def encode_texts(teacher: Teacher, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    """The teacher's L2-normalised text embeddings, in batches."""
    teacher.to(device)
    chunks = [teacher.encode_text(list(texts[i : i + TEXT_BATCH])).float().cpu()
              for i in range(0, len(texts), TEXT_BATCH)]
    return F.normalize(torch.cat(chunks), dim=-1)


def caption_embeddings(bench: Workbench, teacher: Teacher, data: DatasetSplits, split: str) -> torch.Tensor:
    """Text embeddings of every caption of a split (flattened), through the feature cache."""
    texts, _ = flatten_captions(data.split(split).captions or ())
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    parts = {"kind": "text-embeddings", "teacher": teacher.name, "weights": teacher.fingerprint,
             "dataset": data.name, "split": split, "captions": digest, "count": len(texts)}
    tensors, _ = bench.cache.get_or_compute(parts, lambda: {TEXT_EMBED: encode_texts(teacher, texts, bench.device)})
    return tensors[TEXT_EMBED]


def per_image_text(text_embed: torch.Tensor, split: Split) -> torch.Tensor:
    """Normalised mean of each image's caption embeddings (one text target per image)."""
    _, owners = flatten_captions(split.captions or ())
    sums = torch.zeros(len(split), text_embed.shape[1]).index_add_(0, owners, text_embed)
    return F.normalize(sums, dim=-1)


def split_recalls(images: torch.Tensor, texts: torch.Tensor, split: Split) -> dict[str, float]:
    _, owners = flatten_captions(split.captions or ())
    return retrieval_recalls(F.normalize(images.float(), dim=-1), texts, owners)


def student_inputs(kind: str, data: DatasetSplits, outputs: TeacherOutputs) -> dict[str, torch.Tensor]:
    """Head students read the teacher's pooled features; standalone ones read images at their size."""
    if kind == HEAD:
        return {split: outputs.features[split][POOLED] for split in SPLITS}
    size = data.config.student_image_size or data.native_size
    mean, std = channel_stats(data.train.images)
    return {split: to_tensor(data.split(split).images, size, mean, std) for split in SPLITS}


@torch.inference_mode()
def joint_embeddings(student: torch.nn.Module, method: torch.nn.Module, inputs: torch.Tensor,
                     device: torch.device, batch_size: int = 512) -> torch.Tensor:
    student.eval()
    method.eval()
    return torch.cat([method.joint_embedding(student(inputs[i : i + batch_size].to(device))).float().cpu()
                      for i in range(0, len(inputs), batch_size)])


def _teacher_record(record: RunRecord, teacher: Teacher, test: dict[str, float], val: dict[str, float]) -> RunRecord:
    """The reference cell: the teacher's own recalls in its joint space (no student)."""
    return replace(record, status="done", val_acc=val["mean_recall"], **test, pct_of_teacher=100.0, params=0,
                   method_params=0, size_mb=0.0, inference_params=teacher.num_params(),
                   inference_size_mb=state_size_mb(teacher), finished_at=utcnow())


def run_retrieval_spec(spec: ExperimentSpec, bench: Workbench, study: str, trial_number: int | None = None,
                       on_epoch: Callable[[EpochRecord], None] | None = None,
                       checkpoint: Checkpointer | None = None) -> RunRecord:
    """Train a student into the teacher's joint space and score Recall@1/5/10 both ways on test."""
    from bench.names import PROBE_METHOD
    from bench.run.run_spec import _base_record

    data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
    teacher = bench.teacher(spec.teacher)
    require_image_text(teacher, spec.dataset)
    outputs = bench.teacher_outputs(spec.teacher, data, JOINT_TAPS)
    texts = {split: caption_embeddings(bench, teacher, data, split) for split in ("val", "test")}
    teacher_val = split_recalls(outputs.features["val"][IMAGE_EMBED], texts["val"], data.val)
    teacher_test = split_recalls(outputs.features["test"][IMAGE_EMBED], texts["test"], data.test)
    kind = HEAD if spec.method == PROBE_METHOD else STUDENTS.entry(spec.student).card.kind
    record = replace(_base_record(spec, study, kind, bench, outputs, trial_number),
                     teacher_reference=JOINT_SPACE_REFERENCE, split_sizes=data.split_record(),
                     skipped_images=data.skipped_images)
    if spec.method == PROBE_METHOD:
        return _teacher_record(record, teacher, teacher_test, teacher_val)
    hparams = spec.hparams_dict
    inputs = student_inputs(kind, data, outputs)
    size = int(inputs["train"].shape[-1]) if kind != HEAD else data.native_size
    torch.manual_seed(spec.seed)  # initial weights depend on the spec alone, not on what this process ran before
    student = STUDENTS.get(spec.student)(StudentContext(1, teacher.embed_dim, size), hparams)
    joint_dim = int(outputs.features["train"][IMAGE_EMBED].shape[1])
    method = METHODS.get(spec.method)(MethodContext(1, joint_dim, student.embed_dim), hparams)
    if not hasattr(method, "joint_embedding"):
        raise BenchError(f"method {spec.method!r} cannot train on image-text data; use a joint-space method")
    targets = {IMAGE_EMBED: outputs.features["train"][IMAGE_EMBED]}
    if getattr(method, "needs_text", False):
        targets[TEXT_EMBED] = per_image_text(caption_embeddings(bench, teacher, data, "train"), data.train)

    def score(split: str) -> dict[str, float]:
        return split_recalls(joint_embeddings(student, method, inputs[split], bench.device), texts[split],
                             data.split(split))

    train = inputs["train"]  # the "labels" a joint-space method gets are the batch's image indices
    train_data = TrainData({"train": train}, {"train": torch.arange(len(train))}, targets, class_labels=False)
    result = train_student(student, method, train_data, hparams, spec.epochs, spec.seed, bench.device, on_epoch,
                           checkpoint, val_score=lambda: score("val")["mean_recall"])
    epochs = result.epochs
    test = score("test")
    params, size_mb, extra = num_params(student), state_size_mb(student), method.num_params()
    backbone = (teacher.num_params(), state_size_mb(teacher)) if kind == HEAD else (0, 0.0)
    reference = teacher_test["mean_recall"]
    return replace(
        record, status="done", val_acc=epochs[-1].val_acc if epochs else score("val")["mean_recall"], **test,
        pct_of_teacher=100.0 * test["mean_recall"] / reference if reference > 0 else None,
        params=params, method_params=extra, size_mb=size_mb, inference_params=params + extra + backbone[0],
        inference_size_mb=size_mb + state_size_mb(method) + backbone[1],
        epoch_seconds=result.epoch_seconds, train_images_per_s=result.train_images_per_s,
        peak_mem_mb=result.peak_mem_mb, finished_at=utcnow(), epoch_records=epochs,
        resumed_from_epoch=result.resumed_from_epoch,
    )
