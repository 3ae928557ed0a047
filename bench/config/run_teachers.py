"""`teacher: run:...` in a grid: a trained run named by id, spec-key prefix or selector, resolved against the database.

When the file loads, each `run:<id or key prefix>` and each selector `run:best(student=..., dataset=..., metric=
val_acc)` (the best done run by val score) or `run:each(...)` (every matching done run: one teacher per seed) is
replaced by the teacher name `run:<12-char spec key>` (bench/teachers/trained_run.py) with its kept artifact as
the teacher's weights path. The file's sha256 is checked and the artifact must be a standalone image student's
trained on the grid's dataset; an unknown, unfinished or artifact-less run is refused in one line before anything
runs. Selector fields: student, method, dataset, seed, study, stage (the study `<file name>-<stage>` of a two-stage
file, bench/config/stages.py) and metric (val_acc only: test accuracy never selects anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

PREFIX = "run:"
SELECTOR = re.compile(r"^run:(best|each)\((.*)\)$")
SELECTOR_FIELDS = ("student", "method", "dataset", "seed", "study", "stage", "metric")
METRICS = ("val_acc",)


@dataclass(frozen=True)
class Selector:
    """A parsed `run:best(...)` / `run:each(...)`: which done runs qualify and how many become teachers."""

    mode: str  # best | each
    filters: dict[str, str]
    metric: str = "val_acc"


def parse_selector(text: str, where: str) -> Selector | None:
    """The selector a teacher entry spells, None for a plain `run:<id or key prefix>`; malformed is one line."""
    match = SELECTOR.match(text.replace(" ", ""))
    if match is None:
        if "(" in text:
            raise BenchError(f"{where}field 'teacher': {text!r}: write run:best(field=value, ...) or "
                             f"run:each(...) with fields {', '.join(SELECTOR_FIELDS)}")
        return None
    filters: dict[str, str] = {}
    for item in filter(None, match.group(2).split(",")):
        name, _, value = item.partition("=")
        if name not in SELECTOR_FIELDS or not value:
            raise BenchError(f"{where}field 'teacher': {text!r}: {item!r} is not field=value with a field of "
                             f"{', '.join(SELECTOR_FIELDS)}")
        filters[name] = value
    if not filters.get("seed", "0").isdigit():
        raise BenchError(f"{where}field 'teacher': {text!r}: seed must be a whole number")
    metric = filters.pop("metric", "val_acc")
    if metric not in METRICS:
        raise BenchError(f"{where}field 'teacher': {text!r}: metric {metric!r}; allowed: {', '.join(METRICS)} "
                         "(test accuracy is never used to select)")
    return Selector(match.group(1), filters, metric)


def stage_study(file_name: str, stage: str) -> str:
    """The study name a stage of a two-stage file runs under."""
    return f"{file_name}-{stage}"


def selected_refs(database_url: str, selector: Selector, file_name: str, where: str, text: str) -> list[str]:
    """Spec keys of the done runs with an artifact that the selector picks (best by metric, ties to the oldest)."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from bench.core.names import PROBE_METHOD
    from bench.store.models import Run
    from bench.store.session import get_engine, session_scope

    filters = dict(selector.filters)
    if "stage" in filters:
        filters["study"] = stage_study(file_name, filters.pop("stage"))
    query = select(Run.spec_key, Run.val_acc).where(
        Run.status == "done", Run.artifact_path.is_not(None), Run.method != PROBE_METHOD,
        *(getattr(Run, name) == (int(value) if name == "seed" else value) for name, value in filters.items()),
    ).order_by(Run.id)
    try:
        with session_scope(get_engine(database_url)) as session:
            rows = [tuple(row) for row in session.execute(query).all()]
    except SQLAlchemyError:  # no runs table yet: nothing is trained
        rows = []
    rows = [row for row in rows if row[1] is not None]
    if not rows:
        raise BenchError(f"{where}field 'teacher': {text!r} matches no done run with a kept artifact in "
                         f"{database_url}; train it first (a two-stage file runs its teacher stage first)")
    if selector.mode == "each":
        return [row[0] for row in rows]
    best = max(rows, key=lambda row: float(row[1]))  # max keeps the first (oldest) of equal scores
    return [best[0]]


def resolve_one(database_url: str, ref: str, datasets: list[str], where: str) -> tuple[str, str]:
    """(teacher name, verified artifact path) of one run id or spec-key prefix."""
    from bench.artifacts.store import find_run, verified_path
    from bench.teachers.trained_run import artifact_facts, declare_run, run_name

    try:
        record = find_run(database_url, ref)
        path = verified_path(record)
        facts = artifact_facts(path)
    except BenchError as error:
        raise BenchError(f"{where}field 'teacher': run:{ref}: {error}") from None
    trained_on = facts["spec"].get("dataset")
    other = [name for name in datasets if name != trained_on]
    if other:
        raise BenchError(f"{where}field 'teacher': run:{ref} was trained on {trained_on!r}, and this grid's dataset "
                         f"is {other[0]!r}; a trained run teaches the dataset it learned")
    declare_run(run_name(record.spec_key), path)
    return run_name(record.spec_key), str(path)


def resolve_run_teachers(raw: dict[str, Any], path: Path | None, database_url: str | None,
                         file_name: str | None = None) -> dict[str, Any]:
    """The file's fields with each `run:` teacher replaced by its resolved name and its artifact in `weights`."""
    teachers = raw.get("teacher")
    names = teachers if isinstance(teachers, list) else [teachers]
    if not any(isinstance(name, str) and name.startswith(PREFIX) for name in names):
        return raw
    where = f"{path}: " if path else ""
    if database_url is None:
        raise BenchError(f"{where}field 'teacher': a run: teacher is looked up in the results database; "
                         "run the file with bench run, bench study, bench launch or bench plan (--db)")
    datasets = raw.get("dataset")
    datasets = [str(d) for d in (datasets if isinstance(datasets, list) else [datasets])]
    resolved: list[str] = []
    weights = dict(raw.get("weights") or {})
    for name in names:
        if not (isinstance(name, str) and name.startswith(PREFIX)):
            resolved.append(name)
            continue
        selector = parse_selector(name, where)
        refs = [name[len(PREFIX):]] if selector is None else selected_refs(
            database_url, selector, file_name or (path.stem if path else ""), where, name)
        for ref in refs:
            teacher, artifact = resolve_one(database_url, ref, datasets, where)
            if teacher not in resolved:
                resolved.append(teacher)
            weights[teacher] = artifact
    return {**raw, "teacher": resolved, "weights": weights}
