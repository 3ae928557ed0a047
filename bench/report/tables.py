"""Summaries over seeds and the per-dataset matrix tables (student x teacher per epoch budget)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.report.load import PROBE_METHOD

GROUP_KEYS = ["dataset", "teacher", "student", "method", "epochs"]
RECALL_COLUMN = "mean_recall"


def dataset_metric(runs: pd.DataFrame, dataset: str) -> str:
    """`mean_recall` where the dataset has it (image-text retrieval), else `test_acc`."""
    if RECALL_COLUMN in runs:
        values = runs.loc[runs["dataset"] == dataset, RECALL_COLUMN]
        if values.notna().any():
            return RECALL_COLUMN
    return "test_acc"


def metric_label(metric: str) -> str:
    """Human name of a score column."""
    return "mean retrieval recall %" if metric == RECALL_COLUMN else "test accuracy %"


def with_score(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with `score` (the dataset's metric, as a fraction) and `metric` columns."""
    frame = runs.copy()
    frame["metric"] = frame["dataset"].map({d: dataset_metric(runs, d) for d in frame["dataset"].unique()})
    frame["score"] = pd.to_numeric(frame["test_acc"], errors="coerce")
    if RECALL_COLUMN in frame:
        recall = pd.to_numeric(frame[RECALL_COLUMN], errors="coerce")
        if recall.max(skipna=True) > 1.0:  # stored in percent: bring it to a fraction like test_acc
            recall = recall / 100.0
        frame["score"] = frame["score"].where(frame["metric"] != RECALL_COLUMN, recall)
    return frame


def _problems(statuses: pd.Series) -> str:
    counts = statuses[statuses != "done"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, teacher, student, method, epochs): score mean/std over done seeds, sizes, problems."""
    scored = with_score(runs[runs["method"] != PROBE_METHOD])
    rows = []
    for key, group in scored.groupby(GROUP_KEYS, sort=True):
        done = group[group["status"] == "done"]
        kinds = [k for k in group["student_kind"].dropna().unique() if k]
        rows.append({
            **dict(zip(GROUP_KEYS, key, strict=True)),
            "student_kind": kinds[0] if kinds else "",
            "metric": group["metric"].iloc[0],
            "score_mean": done["score"].mean(),
            "score_std": done["score"].std(ddof=1) if done["score"].count() > 1 else float("nan"),
            "seeds": int(done["score"].count()),
            "pct_of_teacher": done["pct_of_teacher"].mean(),
            "params": done["params"].mean(),
            "size_mb": done["size_mb"].mean(),
            "inference_size_mb": done["inference_size_mb"].mean(),
            "epoch_seconds": done["epoch_seconds"].mean(),
            "epoch_seconds_std": done["epoch_seconds"].std(ddof=1) if len(done) > 1 else float("nan"),
            "runs": len(group),
            "problems": _problems(group["status"]),
        })
    return pd.DataFrame(rows)


def teacher_references(runs: pd.DataFrame) -> pd.DataFrame:
    """The teacher-probe score per (dataset, teacher): the 100% of '% of teacher'."""
    probes = with_score(runs[(runs["method"] == PROBE_METHOD) & (runs["status"] == "done")])
    if "teacher_reference" not in probes:
        probes = probes.assign(teacher_reference="linear-probe")
    return probes.groupby(["dataset", "teacher"], as_index=False).agg(
        score=("score", "mean"), reference=("teacher_reference", "first"))


@dataclass(frozen=True)
class Cell:
    """One matrix cell: score over seeds, % of teacher, and runs that did not finish."""

    mean: float
    std: float
    seeds: int
    pct: float
    problems: str
    best: bool = False

    def text(self, plus_minus: str = "±") -> str:
        """'93.1 ± 0.4' (percent), 'n/a' with no finished seed."""
        if self.seeds == 0:
            return "n/a"
        spread = f" {plus_minus} {self.std * 100:.1f}" if self.seeds > 1 else ""
        return f"{self.mean * 100:.1f}{spread}"

    def detail(self) -> str:
        """'n=2, 98% of T, 1 failed': seeds, % of teacher and problems."""
        parts = [f"n={self.seeds}"]
        if pd.notna(self.pct):
            parts.append(f"{self.pct:.0f}% of T")
        if self.problems:
            parts.append(self.problems)
        return ", ".join(parts)


@dataclass
class Matrix:
    """Rows (student, kind, size MB, inference MB, method) x teachers, for one dataset and epoch budget."""

    dataset: str
    epochs: int
    metric: str
    teachers: list[str]
    rows: list[tuple[str, str, str, str, str]]
    cells: dict[tuple[int, str], Cell] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    reference_kinds: dict[str, str] = field(default_factory=dict)  # teacher -> "linear-probe" or zero-shot line


def _size_label(sizes: pd.Series) -> str:
    sizes = sizes.dropna()
    if sizes.empty:
        return "?"
    low, high = sizes.min(), sizes.max()
    return f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.3f}–{high:.3f}"


def _matrix(dataset: str, epochs: int, rows: pd.DataFrame, references: pd.DataFrame) -> Matrix:
    teachers = sorted(rows["teacher"].unique())
    keys = []
    for (student, method), group in rows.groupby(["student", "method"], sort=True):
        kind = next((k for k in group["student_kind"] if k), "")
        keys.append((student, kind or "?", _size_label(group["size_mb"]), _size_label(group["inference_size_mb"]),
                     method))
    refs = references[references["dataset"] == dataset]
    matrix = Matrix(dataset, epochs, rows["metric"].iloc[0], teachers, keys,
                    references=dict(zip(refs["teacher"], refs["score"], strict=True)),
                    reference_kinds=dict(zip(refs["teacher"], refs["reference"].fillna("linear-probe"), strict=True)))
    for teacher in teachers:
        column = rows[rows["teacher"] == teacher]
        best = column["score_mean"].max()
        for index, (student, _, _, _, method) in enumerate(keys):
            found = column[(column["student"] == student) & (column["method"] == method)]
            if found.empty:
                continue
            r = found.iloc[0]
            is_best = bool(r.seeds > 0 and pd.notna(best) and r.score_mean == best)
            matrix.cells[(index, teacher)] = Cell(r.score_mean, r.score_std, int(r.seeds), r.pct_of_teacher,
                                                  r.problems, is_best)
    return matrix


def matrices(summary: pd.DataFrame, references: pd.DataFrame) -> list[Matrix]:
    """One Matrix per (dataset, epoch budget), in sorted order."""
    if summary.empty:
        return []
    return [_matrix(dataset, int(epochs), rows, references)
            for (dataset, epochs), rows in summary.groupby(["dataset", "epochs"], sort=True)]


PROBLEM_HEADER = ["id", "study", "dataset", "teacher", "student", "method", "epochs", "seed", "status", "error"]


def problem_cells(row: pd.Series) -> list[str]:
    """One unfinished run as display strings (the error's first line, shortened)."""
    error = str(row["error"]).splitlines()[0][:160] if isinstance(row["error"], str) and row["error"] else ""
    return [str(row[c]) for c in PROBLEM_HEADER[:-1]] + [error]


def matrix_header(matrix: Matrix) -> list[str]:
    """Column names of a matrix table."""
    return ["student", "kind", "size MB", "inference MB", "method", *matrix.teachers]


def reference_text(matrix: Matrix) -> str:
    """'effnet-lite0 93.0%' per teacher with a probe run, for the line above a matrix."""
    found = [f"{t} {matrix.references[t] * 100:.1f}% ({matrix.reference_kinds.get(t, 'linear-probe')})"
             for t in matrix.teachers if t in matrix.references]
    return ", ".join(found) if found else "no teacher-probe run"


def matrix_note(matrix: Matrix, best_marker: str) -> str:
    """The sentence under a matrix heading saying how to read it."""
    return (f"Mean ± std over seeds; {best_marker} = best in its teacher column; n = finished seeds; "
            "inference MB includes the teacher backbone a head student still needs; "
            f"% of T = share of the teacher's own score ({reference_text(matrix)}).")
