"""`bench plan` of a stage file: every stage planned, a stage whose teachers are not trained yet on stand-ins.

A later stage's `run:best(stage=...)` / `run:each(stage=...)` cannot be resolved before its stage has run; its
cells are then planned with random-init stand-ins of that stage's student (bench/teachers/trained_run.py
`declare_stand_in`), named `run:<stage>-<student>-best` or `run:<stage>-<student>-seed<i>`: their speed is the
trained teacher's, and their cells' keys are not the real ones (none counts as done).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config.run_teachers import PREFIX, parse_selector
from bench.config.stages import Stage, stage_teachers
from bench.core.errors import BenchError
from bench.plan.cost import NUM_CLASSES


def pending_stage(path: Path, stage: Stage, earlier: dict[str, Any], raw_file: dict[str, Any]) -> Any:
    """`bench plan` before a stage's teachers exist: the stage as a Grid whose `run:` selectors of an earlier stage
    are random-init stand-ins of that stage's student (one for best, one per matching run for each)."""
    from bench.config.base import validate_config
    from bench.config.grid import GridModel, expand_grid
    from bench.teachers.trained_run import declare_stand_in

    teachers: list[str] = []
    for text in stage_teachers(stage.raw):
        selector = parse_selector(text, f"{path}: ") if text.startswith(PREFIX) else None
        source = earlier.get(selector.filters.get("stage", "")) if selector else None
        if selector is None or source is None:
            teachers.append(text)
            continue
        matching = [spec for spec in source.specs if all(
            str(getattr(spec, field)) == value for field, value in selector.filters.items() if field != "stage")]
        if not matching:
            raise BenchError(f"{path}: field 'teacher': {text!r} matches no run of stage "
                             f"{selector.filters['stage']!r}")
        for spec in matching if selector.mode == "each" else matching[:1]:
            name = f"{PREFIX}{selector.filters['stage']}-{spec.student}-" + (
                f"seed{spec.seed}" if selector.mode == "each" else "best")
            declare_stand_in(name, spec.student, spec.hparams_dict, _student_size(spec), _classes(spec.dataset))
            teachers.append(name)
    return expand_grid(validate_config({**stage.raw, "teacher": teachers}, path, GridModel, "grid"), path)


def _student_size(spec: Any) -> int:
    from bench.core.registries import DATASETS

    data = spec.data_dict
    return int(data.get("student_image_size") or data.get("image_size") or DATASETS.entry(spec.dataset).card.image_size
               or 32)


def _classes(dataset: str) -> int:
    return NUM_CLASSES.get(dataset, 10)


@dataclass
class StagesPlan:
    """Every stage's cells together (bench/plan/dry_run.py makes them one grid Plan) and what to say about them."""

    name: str
    references: list[Any] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)
    stand_ins: dict[str, str] = field(default_factory=dict)  # stand-in teacher -> the stage that waits on it
    lines: list[str] = field(default_factory=list)


def stages_plan(path: Path, raw: dict[str, Any], db_url: str | None) -> StagesPlan:
    """Every stage's cells: resolved against the database where its teachers exist, else
    on stand-ins, with a line per stage saying which."""
    from bench.config.stages import file_name, load_stage, stages_of
    from bench.sweep.grid import grid_cells

    stages = stages_of(raw, path)
    plan = StagesPlan(file_name(raw, path))
    loaded: dict[str, Any] = {}
    for stage in stages:
        try:
            grid, note = load_stage(path, stage, db_url, raw), "teachers resolved in the database"
        except BenchError:
            if not _names_a_stage(stage, path):
                raise
            grid = pending_stage(path, stage, loaded, raw)
            stand_ins = sorted({spec.teacher for spec in grid.specs if spec.teacher.startswith(PREFIX)})
            plan.stand_ins.update(dict.fromkeys(stand_ins, stage.name))
            note = (f"its teachers are trained by an earlier stage first; planned on random-init stand-ins "
                    f"{', '.join(stand_ins)}")
        loaded[stage.name] = grid
        cells = grid_cells(grid)
        plan.references += [spec for spec in cells[: len(cells) - len(grid.specs)] if spec not in plan.references]
        plan.runs += list(grid.specs)
        plan.weights.update(grid.weights)
        plan.lines.append(f"stage {stage.name} (grid {stage.study}): {len(cells)} cells; {note}")
    return plan


def _names_a_stage(stage: Stage, path: Path) -> bool:
    for text in stage_teachers(stage.raw):
        selector = parse_selector(text, f"{path}: ") if text.startswith(PREFIX) else None
        if selector is not None and "stage" in selector.filters:
            return True
    return False
