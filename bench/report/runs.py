"""`bench runs` and `bench show`: list runs, or one run with its epochs, straight from the database."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import inspect

from bench.core.errors import BenchError
from bench.report.load import load_epochs, load_runs, read_frame
from bench.report.tables import GROUP_KEYS, with_setting
from bench.store.sql import read_only_engine

LIST_COLUMNS = ["id", "spec_key", "study", "dataset", "teacher", "student", "method", "setting", "epochs", "seed",
                "status", "test_acc", "val_acc", "size_mb", "epoch_seconds", "finished_at"]
# What a terminal shows by default (fits 120 columns); --columns picks any run column, --csv/--json give LIST_COLUMNS.
SCREEN_COLUMNS = ["id", "teacher", "student", "method", "setting", "seed", "status", "test_acc",
                  "epoch_seconds", "finished_at"]
NARROW_COLUMNS = ["id", "student", "method", "setting", "seed", "status", "test_acc"]  # terminals under 120 columns
SHORT_KEY = 8
DIGITS = {"test_acc": 4, "val_acc": 4, "teacher_acc": 4, "pct_of_teacher": 1, "size_mb": 3, "inference_size_mb": 3,
          "epoch_seconds": 2, "teacher_pass_s": 1, "train_images_per_s": 0, "peak_mem_mb": 1}


def parse_columns(columns: str | None, known: list[str]) -> list[str] | None:
    """'id,method,test_acc' -> the names, each checked against the runs table's columns (plus 'setting')."""
    if columns is None:
        return None
    names = [name.strip() for name in columns.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise BenchError(f"--columns {columns!r}: unknown column(s) {unknown or ['(none given)']}; "
                         f"known: {', '.join(known)}")
    return names


def run_table(db_url: str, where: str | None = None, columns: str | None = None,
              screen: bool = False, width: int = 120) -> tuple[list[str], list[tuple]]:
    """The list of runs (short spec keys, the hparams that differ among the listed rows) as columns and rows.

    `screen` rounds figures and shortens timestamps for a terminal; CSV and JSON keep the stored values.
    """
    runs = load_runs(db_url, where)
    default = (SCREEN_COLUMNS if width >= 120 else NARROW_COLUMNS) if screen else LIST_COLUMNS
    if runs.empty:  # nothing to check the names against: an empty table with the columns asked for
        return [name.strip() for name in columns.split(",") if name.strip()] if columns else default, []
    chosen = parse_columns(columns, [*runs.columns, "setting"])
    runs["setting"] = with_setting(runs, GROUP_KEYS, name_study=False, label_data_seeds=True)["setting"]
    frame = runs[[c for c in (chosen or default) if c in runs]].copy()
    if "spec_key" in frame:
        frame["spec_key"] = frame["spec_key"].str[: SHORT_KEY if screen else 12]
    for name in ("started_at", "finished_at"):
        if name in frame:
            stamps = pd.to_datetime(frame[name], errors="coerce")
            frame[name] = stamps.dt.strftime("%m-%d %H:%M" if screen else "%Y-%m-%d %H:%M:%S.%f")
    if screen:
        for name, digits in DIGITS.items():
            if name in frame:
                frame[name] = pd.to_numeric(frame[name], errors="coerce").round(digits)
    frame = frame.astype(object).where(frame.notna(), None)
    return list(frame.columns), [tuple(row) for row in frame.itertuples(index=False)]


def _has_runs_table(db_url: str) -> bool:
    engine, _ = read_only_engine(db_url)
    try:
        with engine.connect() as connection:
            return inspect(connection).has_table("runs")
    finally:
        engine.dispose()


def find_run(db_url: str, ref: str) -> pd.Series:
    """One run by id (digits) or by spec key prefix; ambiguous or unknown is a BenchError."""
    if not _has_runs_table(db_url):
        raise BenchError(f"no runs in {db_url}")
    if ref.isdigit():
        found = read_frame(db_url, "SELECT * FROM runs WHERE id = :id", {"id": int(ref)})
        if not found.empty:
            return found.iloc[0]
    found = read_frame(db_url, "SELECT * FROM runs WHERE spec_key LIKE :prefix ORDER BY id",
                       {"prefix": ref.replace("%", "").replace("_", "") + "%"})
    found = found[found["spec_key"].str.startswith(ref)]
    if found.empty:
        raise BenchError(f"no run with id or spec key prefix {ref!r} (see `bench runs`)")
    if len(found) > 1:
        keys = ", ".join(k[:SHORT_KEY] for k in found["spec_key"][:5])
        raise BenchError(f"{ref!r} matches {len(found)} runs ({keys}...); give more of the spec key")
    return found.iloc[0]


def epoch_table(db_url: str, run_id: int) -> pd.DataFrame:
    """The run's epochs with one column per loss term, numbered from 1 (run_epochs.epoch counts from 0)."""
    epochs = load_epochs(db_url, [run_id])
    if epochs.empty:
        return pd.DataFrame(columns=["epoch", "train_loss", "val_acc", "seconds"])
    terms = pd.DataFrame(list(epochs["loss_terms"]), index=epochs.index).add_prefix("loss_")
    numbered = epochs[["epoch", "train_loss"]].assign(epoch=epochs["epoch"] + 1)  # from 1, as plots and trackers count
    return pd.concat([numbered, terms, epochs[["val_acc", "seconds"]]], axis=1)
