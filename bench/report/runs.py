"""`bench runs` and `bench show`: list runs, or one run with its epochs, straight from the database."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import inspect

from bench.errors import BenchError
from bench.report.load import load_epochs, load_runs, read_frame
from bench.report.tables import GROUP_KEYS, with_setting
from bench.sql import read_only_engine

LIST_COLUMNS = ["id", "spec_key", "study", "dataset", "teacher", "student", "method", "setting", "epochs", "seed",
                "status", "test_acc", "val_acc", "size_mb", "epoch_seconds", "finished_at"]
SHORT_KEY = 12


def run_table(db_url: str, where: str | None = None) -> tuple[list[str], list[tuple]]:
    """The list of runs (short spec keys, the hparams that differ among the listed rows) as columns and rows."""
    runs = load_runs(db_url, where)
    if runs.empty:
        return LIST_COLUMNS, []
    runs["setting"] = with_setting(runs, GROUP_KEYS, name_study=False)["setting"]
    frame = runs[[c for c in LIST_COLUMNS if c in runs]].copy()
    frame["spec_key"] = frame["spec_key"].str[:SHORT_KEY]
    frame["finished_at"] = frame["finished_at"].astype(str).replace("NaT", None)
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
    """The run's epochs with one column per loss term."""
    epochs = load_epochs(db_url, [run_id])
    if epochs.empty:
        return pd.DataFrame(columns=["epoch", "train_loss", "val_acc", "seconds"])
    terms = pd.DataFrame(list(epochs["loss_terms"]), index=epochs.index).add_prefix("loss_")
    return pd.concat([epochs[["epoch", "train_loss"]], terms, epochs[["val_acc", "seconds"]]], axis=1)
