"""The training cost of teacher views per setting (data.teacher_views): what `fixed`, `cached` and `online` paid."""

from __future__ import annotations

import math

import pandas as pd

from bench.core.names import REFERENCE_METHODS
from bench.report.tables import with_setting

VIEW_COST_HEADER = ["student", "method", "setting", "teacher", "runs", "training s per run", "teacher s on views",
                    "teacher images on views"]
VIEW_COST_NOTE = ("Training cost per setting where some runs label augmented views (data.teacher_views): training s "
                  "= epochs x mean epoch seconds per run (an online run's teacher forwards are inside it); teacher s "
                  "and images on views: a cached setting's K passes over the train split, paid once per sweep and "
                  "shared by its runs (the figure of the pass that wrote the entry), an online setting's forwards "
                  "summed over its runs; fixed: 0 (its teacher pass is the shared one every setting reads).")


def _views(config: object) -> str:
    return config.get("teacher_views", "fixed") if isinstance(config, dict) else "fixed"


def view_cost_rows(runs: pd.DataFrame, dataset: str) -> list[list[str]]:
    """One row per (student, method, setting, teacher) of `dataset`, when any of its runs reads views; else []."""
    if "teacher_view_s" not in runs or runs.empty:
        return []
    done = runs[(runs["status"] == "done") & (runs["dataset"] == dataset) & ~runs["method"].isin(REFERENCE_METHODS)]
    if done.empty or all(_views(config) == "fixed" for config in done["data_config"]):
        return []
    done = with_setting(done)
    rows = []
    for (student, method, setting, teacher), group in done.groupby(["student", "method", "setting", "teacher"],
                                                                      sort=True):
        mode = _views(group["data_config"].iloc[0])
        view_s = pd.to_numeric(group["teacher_view_s"], errors="coerce")
        images = pd.to_numeric(group["teacher_view_images"], errors="coerce")
        once = mode == "cached"
        seconds = view_s.iloc[0] if once else view_s.sum(min_count=1)
        count = images.iloc[0] if once else images.sum(min_count=1)
        train = (pd.to_numeric(group["epochs"]) * pd.to_numeric(group["epoch_seconds"], errors="coerce")).mean()
        shown = lambda value, fmt: "" if value is None or not math.isfinite(float(value)) else format(value, fmt)  # noqa: E731
        rows.append([student, method, setting, teacher, str(len(group)), shown(train, ".1f"),
                     shown(seconds, ".1f") + (" once" if once else ""), shown(count, ",.0f")])
    return rows
