"""`bench plan FILE`: what a grid or study would run, what is done, what is missing, and what it would cost.

Nothing is trained and nothing is written: the database is read with the grid's own read-only done-key query,
weights are resolved without downloading, dataset roots are located without decoding, and throughput comes from
timing a few batches here (or a cited table for a named GPU, see bench/plan/throughput.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config.base import read_yaml
from bench.core.errors import BenchError
from bench.core.names import FINAL_SUFFIX
from bench.core.spec import ExperimentSpec
from bench.plan import throughput as tp

STUDY_FIELDS = ("search", "trials", "sampler", "pruner", "objectives", "final", "enqueue", "seed")


@dataclass
class Plan:
    """Everything `bench plan` prints; `runnable` decides its exit code."""

    kind: str
    name: str
    references: list[ExperimentSpec]
    runs: list[ExperimentSpec]
    repeats: float = 1.0  # a study runs trials x (mean cell) + its final re-runs
    done: set[str] = field(default_factory=set)
    done_count: int = 0
    missing: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)  # the file's own (run: teachers' artifacts among them)
    stand_ins: dict[str, str] = field(default_factory=dict)  # stage file: stand-in teacher -> the stage it waits on

    @property
    def runnable(self) -> bool:
        return not self.missing


def load_plan(path: Path, db_url: str | None = None) -> Plan:
    """A grid or a study file (a study has `search`, `trials`, ...), validated by its own loader."""
    raw = read_yaml(path, "grid or study")
    from bench.config.stages import is_stage_file

    if is_stage_file(raw):
        from bench.plan.stages import stages_plan

        staged = stages_plan(path, raw, db_url)
        return Plan("grid", staged.name, staged.references, staged.runs, lines=staged.lines, weights=staged.weights,
                    stand_ins=staged.stand_ins)
    if isinstance(raw, dict) and any(key in raw for key in STUDY_FIELDS):
        return _study_plan(path, db_url)
    from bench.config.grid import load_grid
    from bench.sweep.grid import grid_cells

    grid = load_grid(path, db_url)
    cells = grid_cells(grid)
    return Plan("grid", grid.name, cells[: len(cells) - len(grid.specs)], list(grid.specs), weights=dict(grid.weights))


def _study_plan(path: Path, db_url: str | None) -> Plan:
    from bench.config.grid import sweep_specs
    from bench.config.study import load_study_file
    from bench.sweep.cell import probe_cells

    model = load_study_file(path, db_url)
    combos = sweep_specs(model, [model.seed], [model.epochs], f"{path}: ")
    finals = (model.final.top if len(model.objectives) > 1 else 1) * len(model.final.seeds) * (
        2 if model.final.scratch else 1)  # final.scratch: each re-run also as scratch
    references = probe_cells(model.teacher, model.dataset, model.data.config().as_dict())
    plan = Plan("study", model.study_name, references, combos, repeats=(model.trials + finals) / len(combos),
                weights=dict(model.weights))
    plan.lines.append(f"study {model.study_name}: {model.trials} trials over {len(combos)} choice combinations "
                      f"({len(model.search)} searched parameters), then {finals} re-runs on test")
    return plan


def mark_done(plan: Plan, db_url: str) -> None:
    """Done cells, read-only (a missing database or table means none): spec keys for a grid, run counts for a study."""
    from bench.store.sql import read_only_query
    from bench.sweep.grid import stored_done_keys

    if plan.kind == "grid":
        plan.done = stored_done_keys(db_url)
        plan.done_count = sum(spec.key in plan.done for spec in [*plan.references, *plan.runs])
        return
    try:
        _, rows = read_only_query(db_url, "SELECT study, COUNT(*) FROM runs WHERE status = 'done' GROUP BY study",
                                  user_sql=False)
    except BenchError:
        return
    plan.done_count = sum(int(count) for study, count in rows if study in (plan.name, plan.name + FINAL_SUFFIX))


def teacher_presence(names: list[str], weights: dict[str, str]) -> dict[str, Any]:
    """Each teacher's TeacherInfo (weights resolved without downloading, architecture on the meta device)."""
    from bench.teachers.inventory import inventory

    return {info.name: info for info in inventory(names, weights)}


def teacher_fix(info: Any) -> str:
    """The exact command or path that makes a teacher's weights present."""
    from bench.core.registries import TEACHERS
    from bench.teachers.weights import weights_dir_name

    spec_fn = TEACHERS.entry(info.name).card.weights_spec
    fetchable = spec_fn is not None and spec_fn().download is not None
    target = f"$BENCH_WEIGHTS/{weights_dir_name(info.name)}/"
    return (f"bench teachers fetch {info.name}" if fetchable else f"put its weights in {target}") + (
        f" (or put them in {target}, or give --weights {info.name}=PATH)" if fetchable else "")


def dataset_presence(name: str, data: dict[str, Any], data_root: Path | None) -> tuple[Path | None, str | None]:
    """(root, None) when the dataset's `locate` finds it, (None, its one-line error) if not; bundled: (None, None)."""
    from bench.core.registries import DATASETS
    from bench.data.splits import DataConfig

    module = importlib.import_module(DATASETS.entry(name).obj.__module__)
    locate: Callable[..., Path] | None = getattr(module, "locate", None)
    if locate is None:
        return None, None
    try:
        return locate(data_root, DataConfig(**data)), None
    except BenchError as error:
        return None, str(error)


def check_inputs(plan: Plan, weights: dict[str, str], data_root: Path | None) -> dict[str, Any]:
    """Lines for weights and datasets present or missing (with the fix); returns the teachers' infos."""
    cells = [*plan.references, *plan.runs]
    infos = teacher_presence(sorted({spec.teacher for spec in cells}), weights)
    plan.lines.append("teachers:")
    for name, info in infos.items():
        if name in plan.stand_ins:
            plan.lines.append(f"  {name}: trained by an earlier stage first (stage {plan.stand_ins[name]} waits on "
                              "it; a random-init stand-in is timed)")
        elif info.missing:
            plan.missing.append(f"weights of {name}")
            plan.lines.append(f"  {name}: MISSING; fix: {teacher_fix(info)}")
        else:
            plan.lines.append(f"  {name}: present ({info.weights_origin}: {info.weights})")
    plan.lines.append("datasets:")
    for name in sorted({spec.dataset for spec in cells}):
        data = next(spec.data_dict for spec in cells if spec.dataset == name)
        root, problem = dataset_presence(name, data, data_root)
        if problem:
            plan.missing.append(f"dataset {name}")
            plan.lines.append(f"  {name}: MISSING; fix: {problem}")
        else:
            plan.lines.append(f"  {name}: present ({root or 'bundled with the package'})")
    return infos


def group_lines(plan: Plan) -> None:
    """The cells grouped by teacher x dataset: students, methods, seeds and epochs counted, done ones counted."""
    groups: dict[tuple[str, str], list[ExperimentSpec]] = {}
    for spec in plan.runs:
        groups.setdefault((spec.teacher, spec.dataset), []).append(spec)
    total = len(plan.references) + len(plan.runs)
    plan.lines.append(f"{plan.kind} {plan.name}: {total} cells ({len(plan.references)} teacher-reference cells + "
                      f"{len(plan.runs)} {'runs' if plan.kind == 'grid' else 'choice combinations'}); "
                      f"{plan.done_count} already done")
    for (teacher, dataset), specs in groups.items():
        done = sum(spec.key in plan.done for spec in specs)
        count = lambda attr, specs=specs: sorted({str(getattr(spec, attr)) for spec in specs})  # noqa: E731
        plan.lines.append(
            f"  {teacher} x {dataset}: {len(specs)} runs ({done} done): students {', '.join(count('student'))}; "
            f"methods {', '.join(count('method'))}; seeds {len(count('seed'))}; epochs {', '.join(count('epochs'))}")


def bundle_lines(plan: Plan, gpu: str | None, bundle: str) -> None:
    """How the cells not done yet would bundle under `--bundle auto` (bench run's default): head cells that share a
    bundle key train as one stacked model, at most MAX_BUNDLE a bundle (one worker; several split them further)."""
    from collections import Counter

    from bench.plan.cost import bundle_sizes

    if bundle == "off":
        plan.lines.append("bundling: off (--bundle off): every cell trains alone, and the estimate times it alone")
        return
    if plan.kind != "grid":
        plan.lines.append("bundling: a study's trials train one at a time (its sampler draws them), never bundled")
        return
    sizes_of = bundle_sizes(plan)
    alone = sum(1 for spec in plan.runs if spec.key not in plan.done and spec.key not in sizes_of)
    counts = Counter(sizes_of.values())
    sizes = sorted((size for size, cells in counts.items() for _ in range(cells // size)), reverse=True)
    if not sizes:
        plan.lines.append(f"bundling (--bundle auto): none of the {alone} cells to run can bundle; each trains alone")
        return
    timed = ("the estimate below times a stacked step of each bundle's size here" if gpu is None else
             f"the estimate below times every cell alone (the {gpu} table has no stacked rates)")
    plan.lines.append(f"bundling (--bundle auto, the default): {sum(sizes)} head-student cells would train as "
                      f"{len(sizes)} stacked bundle(s) of {', '.join(map(str, sizes))} with one worker, {alone} "
                      f"cells alone; {timed}")


def overlap_lines(plan: Plan) -> None:
    """A line per teacher x dataset cell group whose teacher is known to have seen the test split's data."""
    from bench.teachers.overlap import overlaps

    groups: dict[tuple[str, str], list[ExperimentSpec]] = {}
    for spec in plan.runs:
        groups.setdefault((spec.teacher, spec.dataset), []).append(spec)
    found = [(teacher, dataset, len(specs), overlap) for (teacher, dataset), specs in groups.items()
             for overlap in overlaps(teacher, dataset, specs[0].data_dict)]
    if not found:
        plan.lines.append("pretraining overlap: none known for these teachers and datasets")
        return
    plan.lines.append("pretraining overlap (the teacher saw data of the test split or its source; these cells are "
                      "not held-out results, the report flags them):")
    plan.lines += [f"  OVERLAP {teacher} x {dataset} ({count} runs): {overlap.text()}"
                   for teacher, dataset, count, overlap in found]


def human(seconds: float | None) -> str:
    """'?' / '45 s' / '12 min' / '3.4 h'."""
    if seconds is None:
        return "? (no throughput for it)"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def make_plan(path: Path, db_url: str, gpu: str | None, weights: dict[str, str], data_root: Path | None,
              workers: int = 1, devices: int = 1, bundle: str = "auto") -> Plan:
    """Load and validate the file, count done cells, check weights and data, and estimate each phase's time (and,
    for several workers on `devices` devices, the student epochs' wall time); `bundle` as bench run's --bundle."""
    from bench.plan.cost import Rates, estimate, estimate_basis

    if gpu is not None and gpu not in tp.GPU_SCALE:
        raise BenchError(f"--gpu {gpu!r}: no throughput table for it; known: {', '.join(tp.gpu_names())}")
    plan = load_plan(path, db_url)
    weights = {**plan.weights, **weights}
    mark_done(plan, db_url)
    group_lines(plan)
    bundle_lines(plan, gpu, bundle)
    overlap_lines(plan)
    infos = check_inputs(plan, weights, data_root)
    rates = Rates(gpu, infos, weights)
    totals = estimate(plan, rates, bundle)
    where = f"on one {gpu} (table)" if gpu else "on this machine (timed here)"
    plan.lines.append(f"estimated time {where}, cells not done yet; ESTIMATES, not measurements of the run:")
    for phase, seconds in totals.items():
        plan.lines.append(f"  {phase:<18} {human(seconds)}")
    known = [s for s in totals.values() if s is not None]
    total = sum(known) if len(known) == len(totals) else None
    plan.lines.append(f"  {'total':<18} {human(total)}")
    plan.lines.append(estimate_basis(gpu, rates.flop_scaled))
    if workers > 1:  # bench run --jobs / --workers-per-device: the student epochs dealt to the workers
        from bench.plan.cost import cell_seconds
        from bench.plan.packing import packing_line

        cells = cell_seconds(plan, rates, bundle)
        plan.lines.append(packing_line(cells, workers, devices, f"{devices} {gpu or 'device'}(s)") or "")
    from bench.plan.cost import view_costs

    _, view_mb = view_costs(plan, rates)
    if view_mb:
        plan.lines.append(f"cached teacher views on disk: about {view_mb:.0f} MB (K views x train images, logits "
                          "and crop parameters; under --cache-dir)")
    plan.lines.append("throughputs used:")
    plan.lines += [f"  {source}" for source in sorted(rates.sources)]
    return plan
