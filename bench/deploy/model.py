"""One self-contained model per run: images in [0, 1] -> the student's output, with the run's own preprocessing.

The module takes a float32 batch (N, 3, H, W) in [0, 1] at the dataset's native size (greyscale datasets: the one
channel repeated three times, as the run itself does, see `images_to_input`), resizes and normalises it exactly
as the run did (bench/data/images.py `to_tensor`), and returns class logits, or for joint-space runs the L2-normalised
image embedding in the teacher's joint space. A head student carries its frozen teacher backbone and reads the
tap the run read. This is what `bench export` writes and what bench/deploy/inference_cost.py measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.core.names import HEAD
from bench.core.registries import METHODS
from bench.core.taps import IMAGE_EMBED, LOGITS, POOLED
from bench.data.images import resize, to_float
from bench.data.splits import DatasetSplits
from bench.deploy.inference_cost import InferenceCost, measure_cost
from bench.methods.base import Method
from bench.teachers.base import Teacher


@dataclass(frozen=True)
class ImageNorm:
    """Square resize and per-channel normalisation of a model's input (the run's `to_tensor` arguments)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # standalone students: bilinear; a head student: its teacher's (bicubic)

    def as_dict(self) -> dict[str, object]:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}


class Normalise(nn.Module):
    """[0, 1] images at any size -> the normalised square input, as bench/data/images.py `to_tensor` makes it."""

    def __init__(self, norm: ImageNorm) -> None:
        super().__init__()
        self.size = norm.size
        self.mode = norm.interpolation
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = resize(images, self.size, self.mode)  # to_tensor's resize (antialiased bicubic differs even up)
        return (images - self.mean) / self.std


class Deployable(nn.Module):
    """Normalise -> (frozen teacher backbone -> its tap) -> student -> logits, or the joint-space embedding."""

    def __init__(self, normalise: Normalise, student: nn.Module, backbone: Teacher | None = None,
                 tap: str | None = None, joint: Method | None = None) -> None:
        super().__init__()
        self.normalise = normalise
        self.backbone = backbone
        self.tap = tap
        self.student = student
        self.joint = joint

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = self.normalise(images)
        if self.backbone is not None and self.tap is not None:
            inputs = self.backbone.features(inputs, [self.tap])[self.tap].float()
        outputs = self.student(inputs)
        if self.joint is not None:
            return self.joint.joint_embedding(outputs)  # type: ignore[operator]
        return outputs["logits"]


def deployable(student: nn.Module, method: Method, teacher: Teacher, kind: str, input_tap: str | None,
               preprocess: ImageNorm, joint_space: bool) -> nn.Module:
    """The run's student as one eval-mode module that takes [0, 1] images (see the module docstring)."""
    if kind == HEAD and input_tap is None:
        raise BenchError("a head student needs the teacher tap it reads (input_tap); the run's parts name it")
    backbone = teacher if kind == HEAD else None
    model = Deployable(Normalise(preprocess), student, backbone, input_tap if kind == HEAD else None,
                       method if joint_space else None)
    return model.eval().requires_grad_(False)


def is_joint_space(method: Method) -> bool:
    """Whether the method maps the student into the teacher's joint space (its registered card says so)."""
    return any(entry.obj is type(method) and entry.card.joint_space for entry in METHODS)


def images_to_input(images: np.ndarray) -> torch.Tensor:
    """A split's uint8 images (N, H, W[, 3]) -> the deployable's input (N, 3, H, W) float32 in [0, 1]."""
    return to_float(torch.from_numpy(np.ascontiguousarray(images))).contiguous()


def input_shape(data: DatasetSplits) -> tuple[int, int, int]:
    """The deployable's per-image input shape: three channels at the dataset's native height and width."""
    return (3, int(data.train.images.shape[1]), int(data.train.images.shape[2]))


class _LinearHead(nn.Module):
    """A linear classifier on a tap: the reference probe's shape (its weights do not change its cost)."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.linear(features.flatten(1))}


class _OwnLogits(nn.Module):
    """The tap as the logits: a trained run's own classifier output, with nothing added."""

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": features}


class _Embedding(nn.Module):
    """The tap itself, L2-normalised: the teacher's image embedding in its joint space (retrieval)."""

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": F.normalize(features.flatten(1), dim=-1)}


class TeacherPass(nn.Module):
    """Normalise -> frozen teacher backbone -> one tap: the part of a head model its teacher costs."""

    def __init__(self, normalise: Normalise, backbone: Teacher, tap: str) -> None:
        super().__init__()
        self.normalise = normalise
        self.backbone = backbone
        self.tap = tap

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(self.normalise(images), [self.tap])[self.tap].float()


class HeadPass(nn.Module):
    """A head on its teacher tap's features -> logits, or the joint-space embedding: the part a head student adds."""

    def __init__(self, student: nn.Module, joint: Method | None = None) -> None:
        super().__init__()
        self.student = student
        self.joint = joint

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = self.student(features)
        if self.joint is not None:
            return self.joint.joint_embedding(outputs)  # type: ignore[operator]
        return outputs["logits"]


def teacher_norm(teacher: Teacher, data: DatasetSplits) -> ImageNorm:
    """The teacher's preprocessing at the data's image size: what a head model (and the teacher) normalises with."""
    pre = teacher.preprocess.with_size(data.config.image_size)
    return ImageNorm(pre.input_size, pre.mean, pre.std, pre.interpolation)


def teacher_pass_cost(teacher: Teacher, data: DatasetSplits, tap: str,
                      device: torch.device) -> tuple[InferenceCost, tuple[int, ...]]:
    """The teacher pass's cost up to `tap` and the tap's per-image shape (the head's input)."""
    norm = teacher_norm(teacher, data)
    model = TeacherPass(Normalise(norm), teacher, tap).eval().requires_grad_(False)
    cost = measure_cost(model, input_shape(data), device, work_size=norm.size)
    with torch.inference_mode():
        shape = tuple(model(torch.rand(1, *input_shape(data), device=device)).shape[1:])
    return cost, shape


def head_cost(head: nn.Module, feature_shape: tuple[int, ...], device: torch.device) -> InferenceCost:
    """A head's own cost on random features of its tap's shape (its weights and inputs do not change it)."""
    return measure_cost(head.eval().requires_grad_(False), feature_shape, device)  # type: ignore[arg-type]


def has_own_head(teacher: Teacher) -> bool:
    """Whether the teacher classifies by itself (a trained run, `teacher: run:...`): its LOGITS tap is its output,
    so its reference is that head and its cost is its own network, with no probe added on top."""
    return getattr(teacher, "num_classes", None) is not None and LOGITS in teacher.taps


def teacher_head(teacher: Teacher, data: DatasetSplits, retrieval: bool) -> tuple[str, nn.Module | None]:
    """The teacher's own head for its cost: its tap and a linear head of the probe's shape (classification), its
    normalised image embedding (retrieval), or no head: a trained run's LOGITS tap is its whole network's output."""
    if retrieval:
        return IMAGE_EMBED, HeadPass(_Embedding())
    if has_own_head(teacher):
        return LOGITS, None
    return POOLED, HeadPass(_LinearHead(teacher.embed_dim, max(data.num_classes, 1)))


def teacher_deployable(teacher: Teacher, data: DatasetSplits, retrieval: bool) -> nn.Module:
    """The teacher as a deployed model, for its cost: its preprocessing, the backbone, then a linear head of the
    probe's shape on its pooled features (classification; a trained run's own logits as they are) or its
    normalised image embedding (retrieval)."""
    pre = teacher.preprocess.with_size(data.config.image_size)
    norm = Normalise(ImageNorm(pre.input_size, pre.mean, pre.std, pre.interpolation))
    if retrieval:
        return Deployable(norm, _Embedding(), teacher, IMAGE_EMBED).eval().requires_grad_(False)
    if has_own_head(teacher):
        return Deployable(norm, _OwnLogits(), teacher, LOGITS).eval().requires_grad_(False)
    head = _LinearHead(teacher.embed_dim, max(data.num_classes, 1))
    return Deployable(norm, head, teacher, POOLED).eval().requires_grad_(False)


def teacher_pass_key(teacher: Teacher, data: DatasetSplits, tap: str, device: torch.device) -> tuple:
    """What a teacher pass's cost depends on: teacher, input shape and size, tap, device."""
    size = teacher.preprocess.with_size(data.config.image_size).input_size
    return (teacher.name, input_shape(data), size, tap, str(device))
