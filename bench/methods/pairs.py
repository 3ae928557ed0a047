"""Which student output is compared with which teacher tap, and the learned projection between them."""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.core.taps import expand_taps, indexed, tap_family  # noqa: F401 - expand_taps re-exported for callers

Shape = tuple[int, ...]
LAYERED = ("uniform", "last")


def layer_mapping(mapping: str, student_names: Collection[str], teacher_names: Collection[str],
                  family: str) -> list[tuple[str, str]]:
    """'last', 'uniform' (student block i -> teacher block round((i+1)T/S)-1) or explicit '0=3,1=11'."""
    student_layers, teacher_layers = indexed(student_names, family), indexed(teacher_names, family)
    if not student_layers or not teacher_layers:
        raise BenchError(f"layer mapping over '{family}.<i>' needs them from both student and teacher")
    if mapping == "last":
        pairs = [(student_layers[-1], teacher_layers[-1])]
    elif mapping == "uniform":
        s, t = len(student_layers), len(teacher_layers)
        pairs = [(student_layers[i], teacher_layers[max(0, round((i + 1) * t / s) - 1)]) for i in range(s)]
    else:
        try:
            pairs = [tuple(int(x) for x in part.split("=")) for part in mapping.split(",")]  # type: ignore[misc]
        except ValueError:
            raise BenchError(f"layer mapping {mapping!r}: use 'last', 'uniform' or pairs like '0=3,1=11'") from None
        _check_explicit(mapping, pairs, student_layers, teacher_layers, family)
    return [(f"{family}.{s}", f"{family}.{t}") for s, t in pairs]


def _check_explicit(mapping: str, pairs: list[tuple[int, int]], student_layers: list[int],
                    teacher_layers: list[int], family: str) -> None:
    """Explicit pairs may name only layers both sides have (a missing one would fail mid-training)."""
    for side, index, layers in [("student", s, student_layers) for s, _ in pairs] + [
            ("teacher", t, teacher_layers) for _, t in pairs]:
        if index not in layers:
            raise BenchError(f"layer mapping {mapping!r}: the {side} has no {family}.{index} (it has "
                             f"{family}.{layers[0]}..{family}.{layers[-1]})")


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """'embedding=pooled,hidden.2=feature_map' -> [(student output, teacher tap), ...]."""
    pairs = []
    for part in spec.split(","):
        student, sep, teacher = part.strip().partition("=")
        if not sep or not student or not teacher:
            raise BenchError(f"feature pairs {spec!r}: write student=teacher pairs, e.g. 'embedding=pooled', "
                             "or 'uniform' / 'last' for hidden layers")
        pairs.append((student.strip(), teacher.strip()))
    return pairs


def pair_families(spec: str) -> tuple[frozenset[str], frozenset[str]]:
    """(student families, teacher families) a pair spec reads."""
    if spec in LAYERED:
        return frozenset({"hidden"}), frozenset({"hidden"})
    pairs = parse_pairs(spec)
    return frozenset(tap_family(s) for s, _ in pairs), frozenset(tap_family(t) for _, t in pairs)


def resolve_pairs(spec: str, student_names: Collection[str], teacher_names: Collection[str]) -> list[tuple[str, str]]:
    """Concrete (student output, teacher tap) pairs for this student and teacher."""
    if spec in LAYERED:
        return layer_mapping(spec, student_names, teacher_names, "hidden")
    return parse_pairs(spec)


def _pool_to_vector(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    return x.mean(dim=1) if x.dim() == 3 else x


class PairRegressor(nn.Module):
    """Project a student output onto a teacher tap's shape (Linear / 1x1 conv when dims differ) and compare.

    Same rank: compared position by position (conv maps resized to the teacher's grid; token lists of
    different lengths are mean-pooled). Different ranks: both are mean-pooled to vectors first.
    """

    def __init__(self, student_shape: Shape, teacher_shape: Shape, loss: str) -> None:
        super().__init__()
        if loss not in ("mse", "cosine"):
            raise ValueError(f"feature loss must be 'mse' or 'cosine', got {loss!r}")
        self.loss = loss
        self.pool = len(student_shape) != len(teacher_shape) or (
            len(student_shape) == 2 and student_shape[0] != teacher_shape[0])
        student_dim = student_shape[0] if len(student_shape) == 3 else student_shape[-1]
        teacher_dim = teacher_shape[0] if len(teacher_shape) == 3 else teacher_shape[-1]
        self.projection: nn.Module = nn.Identity()
        if student_dim != teacher_dim:
            conv = len(student_shape) == 3 and not self.pool
            self.projection = nn.Conv2d(student_dim, teacher_dim, 1) if conv else nn.Linear(student_dim, teacher_dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.pool:
            student, teacher = _pool_to_vector(student), _pool_to_vector(teacher)
        student = self.projection(student)
        if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
            student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
        if self.loss == "mse":
            return F.mse_loss(student, teacher)
        channel_dim = 1 if student.dim() == 4 else -1
        return (1.0 - F.cosine_similarity(student, teacher, dim=channel_dim)).mean()
