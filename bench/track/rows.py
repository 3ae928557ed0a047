"""A stored run as a tracker sees it: params (the resolved spec), metrics, per-epoch history, tags, the artifact.

Both exporters (MLflow, W&B) read runs through this one module, so they log the same things under the same names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report.load import load_epochs, load_runs

SPEC_KEY_TAG = "bench.spec_key"  # the join between a row and its tracked run: re-exporting updates, never duplicates
SCORE_COLUMNS = ("test_acc", "val_acc", "test_top5", "teacher_acc", "pct_of_teacher", "mean_recall", "params",
                 "size_mb", "inference_size_mb", "epoch_seconds", "train_images_per_s", "peak_mem_mb",
                 "teacher_pass_s", "latency_ms", "throughput_ips", "macs", "teacher_latency_ms", "speedup")
TAG_COLUMNS = ("status", "device", "git_commit", "torch_version", "teacher_reference", "kd_targets")


@dataclass(frozen=True)
class TrackedRun:
    """One `runs` row, flattened for a tracker."""

    spec_key: str
    study: str
    name: str  # teacher/student/method/dataset seed=N
    params: dict[str, str]
    metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (epoch from 1, metrics)
    tags: dict[str, str] = field(default_factory=dict)
    artifact: Path | None = None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def _flatten(prefix: str, mapping: dict[str, Any]) -> dict[str, str]:
    return {f"{prefix}.{name}": str(value) for name, value in sorted((mapping or {}).items())}


def tracked_runs(db_url: str, where: str | None = None) -> Iterator[TrackedRun]:
    """Every run of `where` (read-only SQL guard of bench/report/load.py) with its epochs."""
    runs = load_runs(db_url, where)
    if runs.empty:
        return
    epochs = load_epochs(db_url, [int(i) for i in runs["id"]])
    by_run = {int(run_id): frame.to_dict("records") for run_id, frame in epochs.groupby("run_id")} \
        if not epochs.empty else {}
    for row in runs.to_dict("records"):
        params = {name: str(row[name]) for name in ("teacher", "student", "method", "dataset", "seed", "epochs")}
        params |= _flatten("hparams", row.get("hparams") or {}) | _flatten("data", row.get("data_config") or {})
        metrics = {name: float(row[name]) for name in SCORE_COLUMNS if _finite(row.get(name))}
        tags = {name: str(row[name]) for name in TAG_COLUMNS if row.get(name) not in (None, "") and row.get(name)
                == row.get(name)}
        tags |= {SPEC_KEY_TAG: row["spec_key"], "bench.study": row["study"], "bench.run_id": str(row["id"])}
        history = []
        for epoch in by_run.get(int(row["id"]), []):
            values = {"train_loss": epoch.get("train_loss"), "val_acc": epoch.get("val_acc"),
                      "train_acc": epoch.get("train_acc"), "epoch_seconds": epoch.get("seconds")}
            values |= {f"loss.{term}": value for term, value in (epoch.get("loss_terms") or {}).items()}
            history.append((int(epoch["epoch"]) + 1, {k: float(v) for k, v in values.items() if _finite(v)}))
        artifact = Path(row["artifact_path"]) if row.get("artifact_path") else None
        name = f"{row['teacher']}/{row['student']}/{row['method']}/{row['dataset']} seed={row['seed']}"
        yield TrackedRun(row["spec_key"], row["study"], name, params, metrics, history, tags,
                         artifact if artifact is not None and artifact.is_file() else None)

