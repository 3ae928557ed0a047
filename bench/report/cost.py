"""The inference-cost table of a dataset: every student setting and every teacher, from the stored rows only.

A student row is one setting (mean over its done seeds): latency (batch 1, median ms), throughput (images/s),
MACs per image, inference MB (a head student carries its teacher backbone) and its speed-up over its teacher
(teacher ms / student ms, measured on the same device). A teacher row is its reference cell: the teacher itself.
A head student's row also shows the teacher pass its latency includes; a latency (and a speed-up built on one)
measured with a large spread or on a loaded machine is marked noisy (issue 28).
"""

from __future__ import annotations

import math

import pandas as pd

from bench.core.names import HEAD, REFERENCE_METHODS
from bench.report.tables import finite_max, finite_mean, with_score

COST_HEADER = ["model", "kind", "method", "setting", "teacher", "epochs", "score %", "latency ms", "teacher pass ms",
               "images/s", "MMACs", "inference MB", "speed-up"]
NOISY_SPREAD = 0.25  # interquartile range of the batch-1 runs over their median
NOISY_LOAD = 1.0  # 1-minute load average per CPU: every CPU already busy with other work
NOISY_MARK = "*"
COST_NOISE = ("latency_spread", "cost_load", "teacher_latency_spread", "teacher_cost_load")
COST_NOTE = ("Inference cost of each model as deployed (bench export: preprocessing, a head student's teacher "
             "backbone, the student), float32 on the run's device: latency = median of batch-1 runs after warm-up, "
             "images/s at batch 64, MMACs = million multiply-accumulates per image (torch's flop counter / 2); "
             "speed-up = teacher latency / student latency on the same device. Teacher rows: the teacher with its "
             "reference head. Teacher pass ms: the part of a head student's latency that is its teacher's backbone "
             "(timed once per grid and shared by its heads). "
             f"{NOISY_MARK}: noisy, the batch-1 runs' interquartile range was over {NOISY_SPREAD:.0%} of their "
             f"median or the machine's load was over {NOISY_LOAD:g} per CPU while it was measured (a speed-up is "
             "noisy when either latency is): re-measure on a quiet machine before quoting it. "
             "Blank: not measured (rows stored before bench measured inference cost).")


def _number(value: float, digits: str) -> str:
    return "" if value is None or not math.isfinite(value) else format(value, digits)


def is_noisy(spread: float | None, load: float | None) -> bool:
    """Whether a latency is noise-bound: its runs spread widely, or other work loaded the machine while it ran."""
    def over(value: float | None, limit: float) -> bool:
        return value is not None and math.isfinite(value) and value > limit

    return over(spread, NOISY_SPREAD) or over(load, NOISY_LOAD)


def _marked(text: str, noisy: bool) -> str:
    return f"{text}{NOISY_MARK}" if text and noisy else text


def _cells(row: dict) -> list[str]:
    own = is_noisy(row.get("latency_spread"), row.get("cost_load"))
    teacher = is_noisy(row.get("teacher_latency_spread"), row.get("teacher_cost_load"))
    return [str(row["model"]), str(row["kind"]), str(row["method"]), str(row["setting"]), str(row["teacher"]),
            str(row["epochs"]), _number(row["score"] * 100, ".1f"), _marked(_number(row["latency_ms"], ".3g"), own),
            _number(row.get("backbone_latency_ms", float("nan")), ".3g"),
            _number(row["throughput_ips"], ".4g"), _number(row["macs"] / 1e6, ".4g"),
            _number(row["inference_size_mb"], ".3f"), _marked(_number(row["speedup"], ".3g"), own or teacher)]


def teacher_costs(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per teacher of the dataset: its reference cells' score and cost (means of finite values)."""
    cells = with_score(runs[runs["method"].isin(REFERENCE_METHODS) & (runs["status"] == "done")
                            & (runs["dataset"] == dataset)])
    rows = []
    for teacher, group in cells.groupby("teacher", sort=True):
        rows.append({"model": teacher, "kind": "teacher", "method": group["method"].iloc[0], "setting": "",
                     "teacher": teacher, "epochs": "", "score": finite_mean(group, "score"),
                     "inference_size_mb": finite_mean(group, "inference_size_mb"),
                     **{name: finite_mean(group, name) for name in ("latency_ms", "throughput_ips", "macs")},
                     **{name: finite_max(group, name) for name in ("latency_spread", "cost_load")},
                     "speedup": 1.0 if math.isfinite(finite_mean(group, "latency_ms")) else float("nan")})
    return pd.DataFrame(rows)


def cost_rows(summary: pd.DataFrame, runs: pd.DataFrame, dataset: str) -> list[list[str]]:
    """The cost table's rows for one dataset: teachers first, then each student setting (fastest first)."""
    mine = summary[(summary["dataset"] == dataset) & (summary["seeds"] > 0)] if not summary.empty else summary
    students = [] if mine.empty else [
        {"model": row.student, "kind": row.student_kind, "method": row.method, "setting": row.setting,
         "teacher": row.teacher, "epochs": row.epochs, "score": row.score_mean, "latency_ms": row.latency_ms,
         "throughput_ips": row.throughput_ips, "macs": row.macs, "inference_size_mb": row.inference_size_mb,
         "speedup": row.speedup, "backbone_latency_ms": row.backbone_latency_ms if row.student_kind == HEAD
         else float("nan"), **{name: getattr(row, name) for name in COST_NOISE}}
        for row in mine.sort_values(["latency_ms", "student", "method"], na_position="last").itertuples()]
    teachers = teacher_costs(runs, dataset).to_dict("records")
    return [_cells(row) for row in [*teachers, *students]]


def has_cost(rows: list[list[str]]) -> bool:
    """Whether any row has a measured latency (older databases have none: then the table is left out)."""
    return any(row[COST_HEADER.index("latency ms")] for row in rows)
