"""Cross-field checks when a file loads: each distinct cell's student built on the meta device from the declared
sizes (no weights, no data), and its method's layer pairs named against both sides.

So heads vs width, a patch size that does not divide the image, or an `at_layers` pair naming a missing layer is
refused by `bench plan`, `bench run` and `bench study` alike, before any teacher loads or any row is written. What
the declarations cannot tell (an ImageFolder's image size, a head student's exact input) is left to the
preflight, which builds every cell on the loaded teacher and data (bench/sweep/grid.py check_buildable).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from bench.core.errors import BenchError
from bench.core.names import HEAD, REFERENCE_METHODS
from bench.core.spec import ExperimentSpec
from bench.core.taps import FEATURE_MAP, LOGITS, POOLED, TEXT, TOKENS, tap_family

Shape = tuple[int, ...]
PLACEHOLDER_DIM = 64  # a head student's input width and the teacher's pooled width: no check reads their value
PLACEHOLDER_TOKENS = 17  # 4x4 patches + a class token
PLACEHOLDER_CLASSES = 10
PLACEHOLDER_TEACHER_PARAMS = 20_000_000  # `vit` with `shrink` sizes itself from this: any count gives a valid shape


def check_cells(specs: Iterable[ExperimentSpec], where: str, field: str = "hparams", trial: str = "") -> None:
    """Refuse the first cell whose student or method cannot be built with its hparams, naming the cell."""
    seen: set[tuple[Any, ...]] = set()
    for spec in specs:
        setting = (spec.teacher, spec.student, spec.method, spec.dataset, spec.hparams, spec.data)
        if spec.method in REFERENCE_METHODS or setting in seen:
            continue
        seen.add(setting)
        problem = cell_problem(spec)
        if problem:
            raise BenchError(f"{where}field {field!r}: cell {spec.student} + {spec.method} on "
                             f"{spec.teacher}/{spec.dataset}{trial}: {problem}")


def cell_problem(spec: ExperimentSpec) -> str | None:
    """Why this cell's student or method cannot be built (one line), or None when it can or only data can tell."""
    from bench.core.registries import METHODS, TEACHERS

    shapes = _student_shapes(spec)
    if not isinstance(shapes, dict):
        return shapes  # why it cannot be built, or None when only the real build can tell
    taps = list(TEACHERS.entry(spec.teacher).card.taps)
    try:
        read = METHODS.get(spec.method).teacher_taps(spec.hparams_dict, taps, shapes)
    except BenchError as error:
        return str(error)
    return _missing_taps(read, taps, spec.teacher)


def undecided(specs: Iterable[ExperimentSpec]) -> list[ExperimentSpec]:
    """The cells the declarations cannot check (an ImageFolder's size, a head student's input, an op the meta
    device lacks): `bench plan` builds these on the loaded teacher and data, as `bench run`'s preflight does."""
    return [spec for spec in specs if spec.method not in REFERENCE_METHODS and _student_shapes(spec) is None]


def _student_shapes(spec: ExperimentSpec) -> dict[str, Shape] | str | None:
    """The cell's student output shapes from the declared sizes; a str says why it cannot be built; None: unknown."""
    from bench.core.registries import DATASETS, STUDENTS, TEACHERS

    entry = STUDENTS.entry(spec.student)
    taps = list(TEACHERS.entry(spec.teacher).card.taps)
    size = spec.data_dict.get("student_image_size") or DATASETS.entry(spec.dataset).card.image_size
    input_shape = _head_input(entry.obj.input_tap(taps), taps) if entry.card.kind == HEAD else None
    if (entry.card.kind == HEAD and input_shape is None) or (entry.card.kind != HEAD and size is None):
        return None  # the shape comes from the teacher or the files: the preflight builds it
    own = tuple(sorted((k, v) for k, v in spec.hparams_dict.items() if k in entry.obj.defaults))
    return _student_outputs(spec.student, own, int(size or 32), input_shape)


@functools.lru_cache(maxsize=512)
def _student_outputs(student: str, hparams: tuple[tuple[str, Any], ...], size: int,
                     input_shape: tuple[int, ...] | None) -> dict[str, Shape] | str | None:
    """The student's output shapes from a meta-device build (memoised: cells share students); else why not."""
    import torch

    from bench.core.registries import STUDENTS
    from bench.run.parts import output_shapes
    from bench.students.base import StudentContext

    context = StudentContext(PLACEHOLDER_CLASSES, PLACEHOLDER_DIM, size, input_shape=input_shape,
                             teacher_params=PLACEHOLDER_TEACHER_PARAMS)
    try:
        with torch.device("meta"):
            module = STUDENTS.get(student)(context, dict(hparams))
            return output_shapes(module, torch.zeros(2, *(input_shape or (3, size, size))))
    except BenchError as error:
        return str(error)
    except Exception:  # noqa: BLE001 - an op the meta device lacks: the preflight builds it for real
        return None


def _head_input(tap: str | None, taps: list[str]) -> tuple[int, ...] | None:
    """A plausible per-sample shape of a head student's input tap (only its rank matters), or None."""
    family = tap_family(tap) if tap else None
    if family == POOLED:
        return (PLACEHOLDER_DIM,)
    if family == TOKENS or (family == "hidden" and TOKENS in taps):
        return (PLACEHOLDER_TOKENS, PLACEHOLDER_DIM)
    if family == FEATURE_MAP:
        return (PLACEHOLDER_DIM, 4, 4)
    return None


def _missing_taps(read: Iterable[str], taps: list[str], teacher: str) -> str | None:
    """A layered tap the method would read that the teacher does not give (e.g. hidden.99 of a 12-block ViT)."""
    given = set(taps)
    layered = [name for name in read if "." in name and name not in given and tap_family(name) not in (LOGITS, TEXT)]
    if not layered:
        return None
    return f"reads teacher tap {sorted(layered)[0]!r}, which {teacher!r} does not give ({_layers(taps, layered[0])})"


def _layers(taps: list[str], name: str) -> str:
    family = tap_family(name)
    same = [tap for tap in taps if tap_family(tap) == family]
    return f"it gives {same[0]}..{same[-1]}" if same else f"it gives no {family}.<i>"

