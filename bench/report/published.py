"""Published figures beside ours: a setting whose dataset, student and method (and teacher, when the paper names
one) match a row of a published CSV (studies/published/) gets the paper's number, the difference and whether the
paper's value lies inside our 95% interval.

Our number is the last epoch's test accuracy, mean over seeds; the papers' `selection` column says what theirs is
(RepDistiller: `best`, the best test accuracy seen during training, which favours them). A published row with an
empty teacher (a network trained alone) matches `scratch` under any teacher. A trained-run teacher (`run:<key>`)
matches by its architecture, the student its run trained (bench/report/load.py `trained_run_students`), and is shown
as `resnet32x4 (run:<key>)`. Pandas only (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError

COLUMNS = ("source", "table", "selection", "dataset", "teacher", "student", "method", "test_acc")
SELECTIONS = ("best", "last")
NOTE = ("Ours: test accuracy at the last epoch, mean over seeds with a 95% t interval (test is never used to pick "
        "an epoch). Published figures marked `best` are the best test accuracy seen during training, which is "
        "higher than the last epoch's by construction; `inside` says whether the published value lies in our "
        "interval (n/a with one seed).")


def load_published(path: Path) -> pd.DataFrame:
    """Every row of a published CSV, or of each `*.csv` in a directory; a bad file is one BenchError line."""
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise BenchError(f"--published {path}: no such CSV file or directory of *.csv files")
    frames = []
    for file in files:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
        missing = [column for column in COLUMNS if column not in frame.columns]
        if missing:
            raise BenchError(f"{file}: missing column(s) {', '.join(missing)}; a published CSV needs "
                             f"{', '.join(COLUMNS)}")
        bad = frame[~frame["selection"].isin(SELECTIONS)]
        if not bad.empty:
            raise BenchError(f"{file}: row {bad.index[0] + 2}: selection {bad['selection'].iloc[0]!r} must be "
                             "best or last")
        values = pd.to_numeric(frame["test_acc"], errors="coerce")
        if values.isna().any() or not values.between(0, 100).all():
            row = int(values.index[values.isna() | ~values.between(0, 100)][0]) + 2
            raise BenchError(f"{file}: row {row}: test_acc must be a percentage in [0, 100]")
        frames.append(frame.assign(test_acc=values, file=file.name))
    return pd.concat(frames, ignore_index=True)


def teacher_label(teacher: str, architectures: Mapping[str, str]) -> str:
    """How the table names a teacher: a trained run with its architecture first (`resnet32x4 (run:3f2a9c1d0b12)`)."""
    return f"{architectures[teacher]} ({teacher})" if teacher in architectures else teacher


def compare_published(summary: pd.DataFrame, published: pd.DataFrame,
                      architectures: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (our setting, matching published row): ours, theirs, the difference, inside our interval.
    `architectures`: trained-run teacher name -> the student its run trained, which a published teacher matches."""
    rows = []
    architectures = dict(architectures or {})
    if summary.empty or published.empty:
        return pd.DataFrame(rows)
    ours = summary[summary["metric"] == "test_acc"] if "metric" in summary else summary
    ours = ours.assign(teacher_arch=[architectures.get(name, name) for name in ours["teacher"]])
    for _, theirs in published.iterrows():
        match = ours[(ours["dataset"] == theirs["dataset"]) & (ours["student"] == theirs["student"])
                     & (ours["method"] == theirs["method"])]
        if theirs["teacher"]:
            match = match[(match["teacher"] == theirs["teacher"]) | (match["teacher_arch"] == theirs["teacher"])]
        for _, setting in match.iterrows():
            mean, low, high = (100 * setting[c] for c in ("score_mean", "ci_low", "ci_high"))
            known = setting["seeds"] >= 2 and not math.isnan(low)
            rows.append({
                "dataset": setting["dataset"], "teacher": setting["teacher"],
                "teacher_label": teacher_label(setting["teacher"], architectures), "student": setting["student"],
                "method": setting["method"], "epochs": setting["epochs"], "setting": setting.get("setting", ""),
                "ours": mean, "ci_low": low, "ci_high": high, "seeds": int(setting["seeds"]),
                "published": float(theirs["test_acc"]), "selection": theirs["selection"],
                "difference": mean - float(theirs["test_acc"]),
                "inside": (low <= float(theirs["test_acc"]) <= high) if known else None,
                "source": f"{theirs['source']}, table {theirs['table']}",
            })
    return pd.DataFrame(rows)


HEADER = ["teacher", "student", "method", "epochs", "ours (last epoch)", "n", "published", "difference", "inside"]


def published_cells(row: pd.Series) -> list[str]:
    """A comparison row as table cells: '74.10 [73.60, 74.60]', '74.92 (best)', '-0.82', 'no'."""
    interval = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["inside"] is not None else ""
    inside = "n/a" if row["inside"] is None else ("yes" if row["inside"] else "no")
    method = f"{row['method']} ({row['setting']})" if row["setting"] else row["method"]
    return [row.get("teacher_label", row["teacher"]), row["student"], method, str(row["epochs"]),
            f"{row['ours']:.2f}{interval}", str(row["seeds"]), f"{row['published']:.2f} ({row['selection']})",
            f"{row['difference']:+.2f}", inside]
