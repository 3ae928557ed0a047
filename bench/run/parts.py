"""Build a spec's student and method against its teacher: input tap, output shapes, teacher taps to fetch.

The one builder for every dataset task: classification and retrieval runs get their parts here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.names import HEAD, IMAGE_TEXT, UNLABELED
from bench.core.registries import METHODS, STUDENTS
from bench.core.taps import IMAGE_EMBED, LOGITS, POOLED, TEXT, expand_taps, tap_family
from bench.data.splits import DatasetSplits
from bench.methods.base import Method, MethodContext, Shape
from bench.students.base import StudentContext
from bench.teachers.base import Teacher


@dataclass(frozen=True)
class RunParts:
    """A spec's built student and method, and what they read from the teacher."""

    student: nn.Module
    method: Method
    kind: str
    input_tap: str | None  # the teacher tap a head student reads; None for standalone students
    feature_taps: tuple[str, ...]  # teacher taps to fetch (through the feature cache) for this run
    teacher_targets: tuple[str, ...]  # per-sample teacher outputs the method reads ('logits' = probe)


def teacher_tap_names(teacher: Teacher) -> list[str]:
    """The teacher's concrete tap names ('hidden.<i>' patterns expanded over its depth)."""
    depth = getattr(teacher, "depth", None) or getattr(teacher, "num_layers", None)
    return expand_taps(list(teacher.taps), depth)


def teacher_families(taps: Collection[str], modality: str | None) -> frozenset[str]:
    """Tap families a teacher offers, plus 'logits' (the probe) and 'text' for image-text teachers."""
    families = {tap_family(tap) for tap in taps} | {LOGITS}
    if modality == IMAGE_TEXT or IMAGE_EMBED in families:
        families.add(TEXT)
    return frozenset(families)


def incompatibility(student_name: str, method_name: str, hparams: Mapping[str, Any], teacher_name: str,
                    taps: Sequence[str], modality: str | None) -> str | None:
    """Why this student/method cannot run on a teacher with these taps (one line), or None when they can."""
    entry, method_cls = STUDENTS.entry(student_name), METHODS.get(method_name)
    offered = teacher_families(taps, modality)
    if entry.card.kind == HEAD and entry.obj.input_tap(taps) is None:
        return (f"student {student_name!r} reads teacher tap {' or '.join(entry.obj.input_taps)} that "
                f"{teacher_name!r} does not give (it gives {sorted(offered - {LOGITS})})")
    needs = method_cls.requirements(hparams, taps, entry.obj.provides)
    missing = set(needs.student) - {tap_family(name) for name in entry.obj.provides}
    if missing:
        return (f"student {student_name!r} cannot be trained with method {method_name!r}: "
                f"it gives no {sorted(missing)}; drop the pair or pick another student")
    missing = set(needs.teacher) - offered
    if missing:
        return f"method {method_name!r} needs teacher outputs {sorted(missing)} that {teacher_name!r} does not give"
    return None


@torch.no_grad()
def tap_shapes(teacher: Teacher, taps: Sequence[str], image_size: int) -> dict[str, Shape]:
    """Per-sample shapes of the teacher's taps, from one blank image."""
    if not taps:
        return {}
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    outputs = teacher.features(torch.zeros(1, 3, image_size, image_size, device=device), list(taps))
    return {name: tuple(outputs[name].shape[1:]) for name in taps}


@torch.no_grad()
def output_shapes(student: nn.Module, sample: torch.Tensor) -> dict[str, Shape]:
    """Per-sample shapes of everything the student returns (one eval-mode pass on two blank inputs)."""
    was_training = student.training
    outputs = student.eval()(sample)
    student.train(was_training)
    return {name: tuple(value.shape[1:]) for name, value in outputs.items()}


def _class_text(method_cls: type[Method], hparams: Mapping[str, Any], teacher: Teacher,
                data: DatasetSplits) -> torch.Tensor | None:
    prompts = method_cls.class_prompts(hparams, data.class_names)
    if prompts is None:
        return None
    if not hasattr(teacher, "encode_text"):
        raise BenchError(f"teacher {teacher.name!r} cannot encode text; pick an image-text teacher")
    with torch.no_grad():
        return teacher.encode_text(prompts).float().cpu()


def build_parts(student_name: str, method_name: str, hparams: Mapping[str, Any], teacher: Teacher,
                data: DatasetSplits) -> RunParts:
    """Student sized from the teacher tap it reads, method sized from both sides' output shapes."""
    entry = STUDENTS.entry(student_name)
    taps = teacher_tap_names(teacher)
    teacher_size = teacher.preprocess.with_size(data.config.image_size).input_size
    input_tap, input_shape = None, None
    if entry.card.kind == HEAD:
        input_tap = entry.obj.input_tap(taps)
        if input_tap is None:
            raise BenchError(f"student {student_name!r} reads teacher tap(s) {list(entry.obj.input_taps)}; "
                             f"{teacher.name!r} gives {taps}")
        input_shape = tap_shapes(teacher, [input_tap], teacher_size)[input_tap]
    size = data.config.student_image_size or data.native_size
    num_classes = max(data.num_classes, 1)  # retrieval data has no classes: students keep a one-class head
    student = entry.obj(StudentContext(num_classes, teacher.embed_dim, size, input_shape=input_shape,
                                       teacher_params=teacher.num_params()), hparams)
    sample = torch.zeros(2, *input_shape) if input_shape is not None else torch.zeros(2, 3, size, size)
    student_shapes = output_shapes(student, sample)
    method_entry = METHODS.entry(method_name)
    method_cls = method_entry.obj
    targets = method_cls.teacher_taps(hparams, taps, student_shapes)
    feature_taps = tuple(sorted({POOLED, *targets, *([input_tap] if input_tap else [])} - {LOGITS}))
    teacher_shapes = tap_shapes(teacher, feature_taps, teacher_size)
    teacher_dim = _method_teacher_dim(method_entry.card.joint_space, teacher, teacher_shapes)
    context = MethodContext(num_classes, teacher_dim, student.embed_dim, student_shapes, teacher_shapes,
                            _class_text(method_cls, hparams, teacher, data), masked_train_labels(data))
    return RunParts(student, method_cls(context, hparams), entry.card.kind, input_tap, feature_taps,
                    tuple(sorted(targets)))


def masked_train_labels(data: DatasetSplits) -> torch.Tensor:
    """Every train row's label as a method may read it: -1 outside the labeled rows (data.labeled_limit)."""
    from bench.teacher_outputs.finetune import labeled_rows

    labels = torch.tensor(data.train.labels)
    if data.config.labeled_limit is None:
        return labels
    masked = torch.full_like(labels, UNLABELED)
    rows = torch.from_numpy(labeled_rows(data.train.labels, data.config.labeled_limit, data.config.label_seed()))
    masked[rows] = labels[rows]
    return masked


def _method_teacher_dim(joint_space: bool, teacher: Teacher, teacher_shapes: Mapping[str, Shape]) -> int:
    """A joint-space method maps into the teacher's image_embed space; every other one sees its pooled width."""
    if not joint_space:
        return teacher.embed_dim
    if IMAGE_EMBED not in teacher_shapes:
        raise BenchError(f"teacher {teacher.name!r} gives no {IMAGE_EMBED!r}; joint-space methods need one")
    return int(teacher_shapes[IMAGE_EMBED][-1])
