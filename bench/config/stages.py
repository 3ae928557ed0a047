"""Two-stage files: `stages:` trains teachers first, then distils from them (`teacher: run:best(stage=...)`).

A stage file is a mapping with `stages:` (a list of grids, each with its own `name`) and shared grid fields beside
it; each stage is the shared fields with its own on top (`data` and `hparams` merged key by key) and runs as the
grid `<file name>-<stage name>`, in order. A later stage names an earlier one's runs with a selector
(bench/config/run_teachers.py), resolved only when that stage loads, so `bench run FILE` runs the teacher stage
before it resolves the student stage, and running it again does nothing. `bench plan FILE` lists every stage; a
stage whose teacher stage has not run yet is planned on a random-init stand-in of the teacher stage's student.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config.run_teachers import PREFIX, parse_selector, stage_study
from bench.core.errors import BenchError

STAGES = "stages"
MERGED = ("data", "hparams", "weights", "recipes")  # shared mappings a stage extends key by key


@dataclass(frozen=True)
class Stage:
    """One stage of a stage file: its name, its study name and its grid fields (shared ones merged in)."""

    name: str
    study: str
    raw: dict[str, Any]


def is_stage_file(raw: Any) -> bool:
    """Whether parsed YAML is a stage file (it has `stages:`)."""
    return isinstance(raw, dict) and STAGES in raw


def file_name(raw: dict[str, Any], path: Path) -> str:
    """The file's name (its `name:` or its file name): the prefix of its stages' study names."""
    return str(raw.get("name") or path.stem)


def stages_of(raw: dict[str, Any], path: Path) -> list[Stage]:
    """Each stage's grid fields, in file order; a malformed `stages:` is one BenchError line."""
    items = raw.get(STAGES)
    if not isinstance(items, list) or not items:
        raise BenchError(f"{path}: field 'stages': a non-empty list of grids, each with a name "
                         "(e.g. [{name: teacher, ...}, {name: students, teacher: 'run:best(stage=teacher)', ...}])")
    shared = {key: value for key, value in raw.items() if key not in (STAGES, "name")}
    name = file_name(raw, path)
    stages: list[Stage] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise BenchError(f"{path}: field 'stages[{index}]': a mapping of grid fields with a name")
        if item["name"] in [stage.name for stage in stages]:
            raise BenchError(f"{path}: field 'stages[{index}].name': {item['name']!r} is used twice")
        merged = {**shared, **{key: value for key, value in item.items() if key != "name"}}
        for key in MERGED:
            if isinstance(shared.get(key), dict) and isinstance(item.get(key), dict):
                merged[key] = {**shared[key], **item[key]}
        _check_order(merged, stages, path, index)
        stages.append(Stage(item["name"], stage_study(name, item["name"]), {**merged, "name": stage_study(name,
                                                                                                      item["name"])}))
    return stages


def _check_order(raw: dict[str, Any], earlier: list[Stage], path: Path, index: int) -> None:
    """A stage's selectors may name only stages before it."""
    for teacher in stage_teachers(raw):
        selector = parse_selector(teacher, f"{path}: stages[{index}]: ") if teacher.startswith(PREFIX) else None
        stage = selector.filters.get("stage") if selector else None
        if stage is not None and stage not in [s.name for s in earlier]:
            raise BenchError(f"{path}: field 'stages[{index}].teacher': {teacher!r} names stage {stage!r}, which is "
                             f"not an earlier stage of this file ({', '.join(s.name for s in earlier) or 'none'})")


def stage_teachers(raw: dict[str, Any]) -> list[str]:
    """The `teacher` field of a stage's raw fields as a list of strings."""
    value = raw.get("teacher")
    return [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]


def load_stage(path: Path, stage: Stage, database_url: str | None, raw_file: dict[str, Any]) -> Any:
    """The stage as a Grid (bench/config/grid.py), its `run:` teachers resolved against the database now."""
    from bench.config.base import validate_config
    from bench.config.grid import GridModel, expand_grid
    from bench.config.run_teachers import resolve_run_teachers

    raw = resolve_run_teachers(stage.raw, path, database_url, file_name(raw_file, path))
    return expand_grid(validate_config(raw, path, GridModel, "grid"), path)
