"""Gather everything a report shows (tables, tests, plots, studies, provenance) into one ReportData."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError
from bench.core.names import FINAL_SUFFIX
from bench.report.caveats import annotate
from bench.report.contents import ReportData
from bench.report.cost import teacher_costs
from bench.report.load import load_epochs, load_runs, trained_run_students
from bench.report.optuna_tables import search_studies
from bench.report.plots import accuracy_vs_latency, accuracy_vs_size, epoch_time, learning_curves
from bench.report.provenance import provenance
from bench.report.published import compare_published, load_published
from bench.report.stats import baseline_gains
from bench.report.studies import study_reports
from bench.report.tables import matrices, summarise, teacher_references


def _dataset_plots(data: ReportData, epochs: pd.DataFrame, out_dir: Path) -> None:
    for dataset in data.datasets:
        made = [accuracy_vs_size(data.summary, dataset, out_dir),
                accuracy_vs_latency(data.summary, teacher_costs(data.runs, dataset), dataset, out_dir),
                epoch_time(data.summary, dataset, out_dir),
                learning_curves(data.runs, epochs, dataset, out_dir)]
        data.plots[dataset] = [p for p in made if p is not None]


def reported_runs(runs: pd.DataFrame, searches: set[str]) -> pd.DataFrame:
    """The runs the tables show: every row but the trials of a `bench study` search (their `/final` re-runs stay)."""
    return runs[~runs["study"].isin(searches)]


def _study_names(runs: pd.DataFrame) -> set[str]:
    """The studies of these runs, and the search behind each `<name>/final`."""
    names = {str(n) for n in runs["study"].dropna()}
    return names | {n[: -len(FINAL_SUFFIX)] for n in names if n.endswith(FINAL_SUFFIX)}


def build_report(db_url: str, out_dir: Path, where: str | None = None,
                 title: str = "distill-bench report", published: Path | None = None) -> ReportData:
    """Load the runs, compute tables and tests, draw the plots into `out_dir`; `published`: a CSV (or a directory
    of them) of published figures to set beside the matching settings."""
    published_rows = load_published(published) if published is not None else None  # a bad file: before any work
    try:
        runs = load_runs(db_url, where)
    except BenchError as error:
        if str(error).startswith("database not found"):
            raise BenchError(f"no runs to report: {error}") from None
        raise
    if runs.empty:
        filtered = f" matched by --where {where!r}" if where else " in the database"
        raise BenchError(f"no runs to report: no rows{filtered} ({db_url})")
    out_dir.mkdir(parents=True, exist_ok=True)
    all_runs, runs = runs, reported_runs(runs, search_studies(db_url))
    summary = summarise(runs)
    references = teacher_references(runs)
    data = ReportData(title, runs, summary, references, matrices(summary, references), baseline_gains(runs),
                      provenance(all_runs, db_url, where), all_runs=all_runs)
    if len(all_runs) > len(runs):
        data.provenance.insert(4, ("study search trials", f"{len(all_runs) - len(runs)} runs of "
                                   f"{', '.join(sorted(set(all_runs['study']) - set(runs['study'])))} "
                                   "(val only: not in the tables; see Optuna studies)"))
    epochs = load_epochs(db_url, runs.loc[runs["status"] == "done", "id"])
    annotate(data.matrices, runs, epochs)
    if published_rows is not None:
        architectures = trained_run_students(db_url, summary["teacher"]) if not summary.empty else {}
        data.published = compare_published(summary, published_rows, architectures)
    _dataset_plots(data, epochs, out_dir)
    names = None if where is None else _study_names(all_runs)
    data.studies = study_reports(db_url, names, out_dir)
    sources = [f"{study.name}: {study.source_file}" for study in data.studies if study.source_file]
    if sources:
        data.provenance.insert(3, ("grid files", ", ".join(sources)))
    return data
