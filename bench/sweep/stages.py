"""`bench run` of a stage file: each stage loaded (its `run:` teachers resolved now) and run as a grid, in order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config.base import read_yaml
from bench.config.stages import load_stage, stages_of
from bench.sweep.grid import GridSummary, run_grid


def run_stage_file(path: Path, db_url: str, context: Any, console: Any = None, options: Any = None,
                   enqueue_only: bool = False, extra_weights: Callable[[list[str]], dict[str, str]] | None = None,
                   ) -> list[GridSummary]:
    """Run every stage not yet done, one after the other; a later stage resolves its teachers only once the earlier
    ones have run (so running the file again does nothing). `--enqueue-only` enqueues the first stage with cells
    to run and stops there: its teachers must exist before the next stage can be resolved."""
    raw = read_yaml(path, "grid")
    summaries = []
    for stage in stages_of(raw, path):
        grid = load_stage(path, stage, db_url, raw)
        if extra_weights is not None:
            grid.weights.update(extra_weights(sorted({spec.teacher for spec in grid.specs})))
        summary = run_grid(grid, db_url, context, console, options, enqueue_only)
        summaries.append(summary)
        if enqueue_only and summary.skipped < summary.total:
            break
    return summaries
