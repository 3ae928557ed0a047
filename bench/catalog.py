"""All registries in one place (imports the entry packages, which imports torch)."""

from __future__ import annotations

from bench.registry import Registry


def registries() -> dict[str, Registry]:
    """{'teachers': ..., 'students': ..., 'methods': ..., 'datasets': ...}."""
    from bench.data import DATASETS
    from methods import METHODS
    from students import STUDENTS
    from teachers import TEACHERS

    return {"teachers": TEACHERS, "students": STUDENTS, "methods": METHODS, "datasets": DATASETS}
