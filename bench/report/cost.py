"""The inference-cost table of a dataset: every student setting and every teacher, from the stored rows only.

A student row is one setting (mean over its done seeds): latency (batch 1, median ms), throughput (images/s),
MACs per image, inference MB (a head student carries its teacher backbone) and its speed-up over its teacher
(teacher ms / student ms, measured on the same device). A teacher row is its reference cell: the teacher itself.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.core.names import REFERENCE_METHODS
from bench.report.tables import finite_mean, with_score

COST_HEADER = ["model", "kind", "method", "setting", "teacher", "epochs", "score %", "latency ms", "images/s",
               "MMACs", "inference MB", "speed-up"]
COST_NOTE = ("Inference cost of each model as deployed (bench export: preprocessing, a head student's teacher "
             "backbone, the student), float32 on the run's device: latency = median of batch-1 runs after warm-up, "
             "images/s at batch 64, MMACs = million multiply-accumulates per image (torch's flop counter / 2); "
             "speed-up = teacher latency / student latency on the same device. Teacher rows: the teacher with its "
             "reference head. Blank: not measured (rows stored before bench measured inference cost).")


def _number(value: float, digits: str) -> str:
    return "" if value is None or not math.isfinite(value) else format(value, digits)


def _cells(row: dict) -> list[str]:
    return [str(row["model"]), str(row["kind"]), str(row["method"]), str(row["setting"]), str(row["teacher"]),
            str(row["epochs"]), _number(row["score"] * 100, ".1f"), _number(row["latency_ms"], ".3g"),
            _number(row["throughput_ips"], ".4g"), _number(row["macs"] / 1e6, ".4g"),
            _number(row["inference_size_mb"], ".3f"), _number(row["speedup"], ".3g")]


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
                     "speedup": 1.0 if math.isfinite(finite_mean(group, "latency_ms")) else float("nan")})
    return pd.DataFrame(rows)


def cost_rows(summary: pd.DataFrame, runs: pd.DataFrame, dataset: str) -> list[list[str]]:
    """The cost table's rows for one dataset: teachers first, then each student setting (fastest first)."""
    mine = summary[(summary["dataset"] == dataset) & (summary["seeds"] > 0)] if not summary.empty else summary
    students = [] if mine.empty else [
        {"model": row.student, "kind": row.student_kind, "method": row.method, "setting": row.setting,
         "teacher": row.teacher, "epochs": row.epochs, "score": row.score_mean, "latency_ms": row.latency_ms,
         "throughput_ips": row.throughput_ips, "macs": row.macs, "inference_size_mb": row.inference_size_mb,
         "speedup": row.speedup}
        for row in mine.sort_values(["latency_ms", "student", "method"], na_position="last").itertuples()]
    teachers = teacher_costs(runs, dataset).to_dict("records")
    return [_cells(row) for row in [*teachers, *students]]


def has_cost(rows: list[list[str]]) -> bool:
    """Whether any row has a measured latency (older databases have none: then the table is left out)."""
    return any(row[COST_HEADER.index("latency ms")] for row in rows)
