"""The four registries. Each imports every module of its package on first use, so a new teacher, student,
method or dataset is one file in `bench/teachers/`, `bench/students/`, `bench/methods/` or `bench/datasets/`.

Torch-free: importing this module imports no unit; the first lookup does.
"""

from __future__ import annotations

from typing import Any

from bench.core.cards import DatasetCard, MethodCard, StudentCard, TeacherCard
from bench.core.registry import Registry

TEACHERS: Registry[Any] = Registry("teacher", TeacherCard, package="bench.teachers")
STUDENTS: Registry[Any] = Registry("student", StudentCard, package="bench.students")
METHODS: Registry[Any] = Registry("method", MethodCard, package="bench.methods")
DATASETS: Registry[Any] = Registry("dataset", DatasetCard, package="bench.datasets")

GENERIC_TEACHER_NAMES = ("timm:<model_name>", "open_clip:<arch>[:<pretrained_tag>]", "hf:<org>/<repo>")
GENERIC_STUDENT_NAMES = ("timm:<model_name> (standalone, random init)",)


def registries() -> dict[str, Registry]:
    """{'teachers': ..., 'students': ..., 'methods': ..., 'datasets': ...} (what `bench list` prints)."""
    return {"teachers": TEACHERS, "students": STUDENTS, "methods": METHODS, "datasets": DATASETS}
