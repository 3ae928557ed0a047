"""Typed cards: what the registries know about a unit before building it (torch-free).

Every teacher, student, method and dataset is registered with one card of its kind, declared once
beside the unit. Checks that run before anything is built (grid validation, `bench list`, the
pipeline's choice of task) read cards, never the built objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.core.names import CLASSIFICATION, HEAD, IMAGE, IMAGE_TEXT, RETRIEVAL, STANDALONE


@dataclass(frozen=True)
class TeacherCard:
    """A teacher: the library that loads it, the taps it gives, its modality, and how to describe it unloaded."""

    library: str  # "timm", "open_clip", "transformers"
    taps: tuple[str, ...]  # tap names ('hidden.<i>' concrete per block) the built teacher gives
    modality: str = IMAGE  # IMAGE_TEXT teachers also encode text (zero-shot references, retrieval)
    model: str | None = None  # the library's model name, when it differs from the registered name
    describe: Callable[..., dict[str, Any]] | None = None  # (weights path) -> params, embed_dim, preprocess; no load
    weights_spec: Callable[[], Any] | None = None  # where its weights are looked for (bench teachers)
    packaged_weights: Callable[[], Any] | None = None  # a weights file shipped in a Python package

    def __post_init__(self) -> None:
        if self.modality not in (IMAGE, IMAGE_TEXT):
            raise ValueError(f"teacher modality must be {IMAGE!r} or {IMAGE_TEXT!r}, got {self.modality!r}")
        object.__setattr__(self, "taps", tuple(self.taps))

    @property
    def label(self) -> str:
        return self.library

    @property
    def image_text(self) -> bool:
        return self.modality == IMAGE_TEXT


@dataclass(frozen=True)
class StudentCard:
    """A student: HEAD students read a teacher tap, STANDALONE students read images."""

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in (HEAD, STANDALONE):
            raise ValueError(f"student kind must be {HEAD!r} or {STANDALONE!r}, got {self.kind!r}")

    @property
    def label(self) -> str:
        return self.kind


@dataclass(frozen=True)
class MethodCard:
    """A method: its family (what it transfers) and whether it trains into an image-text joint space."""

    family: str  # "baseline", "logits", "features", "relational", "attention", ...
    joint_space: bool = False  # maps the student into the teacher's joint space: retrieval datasets only

    @property
    def label(self) -> str:
        return f"{self.family} (joint space)" if self.joint_space else self.family


@dataclass(frozen=True)
class DatasetCard:
    """A dataset: its task decides how runs on it are trained and scored (bench/run/classification.py, retrieval.py)."""

    task: str
    image_size: int | None = None  # the stored images' side, a standalone student's default input; None: varies

    def __post_init__(self) -> None:
        if self.task not in (CLASSIFICATION, RETRIEVAL):
            raise ValueError(f"dataset task must be {CLASSIFICATION!r} or {RETRIEVAL!r}, got {self.task!r}")

    @property
    def label(self) -> str:
        return self.task
