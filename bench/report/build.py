"""Gather everything a report shows (tables, tests, plots, studies, provenance) and write the formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.names import FINAL_SUFFIX
from bench.report import plots
from bench.report.load import load_epochs, load_runs
from bench.report.optuna_tables import search_studies
from bench.report.provenance import provenance
from bench.report.stats import baseline_gains
from bench.report.studies import StudyReport, study_reports
from bench.report.tables import Matrix, matrices, summarise, teacher_references

FORMATS = ("md", "html", "csv", "tex")
DEFAULT_FORMATS = ("md", "html", "csv")


@dataclass
class ReportData:
    """Everything one report shows, computed once and rendered by each format."""

    title: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    references: pd.DataFrame
    matrices: list[Matrix]
    gains: pd.DataFrame
    provenance: list[tuple[str, str]]
    plots: dict[str, list[plots.Plot]] = field(default_factory=dict)
    studies: list[StudyReport] = field(default_factory=list)
    all_runs: pd.DataFrame | None = None  # every matched row, study search trials included (runs.csv)

    @property
    def datasets(self) -> list[str]:
        """Datasets with at least one run, sorted."""
        return sorted(self.runs["dataset"].unique())

    @property
    def unfinished(self) -> pd.DataFrame:
        """Runs whose status is not 'done' (failed, pruned, running): shown, never dropped."""
        return self.runs[self.runs["status"] != "done"]


def parse_formats(text: str) -> tuple[str, ...]:
    """'md,html' -> ('md', 'html'); an unknown format is a BenchError."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise BenchError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def _dataset_plots(data: ReportData, db_url: str, out_dir: Path) -> None:
    epochs = load_epochs(db_url, data.runs.loc[data.runs["status"] == "done", "id"])
    for dataset in data.datasets:
        made = [plots.accuracy_vs_size(data.summary, dataset, out_dir),
                plots.epoch_time(data.summary, dataset, out_dir),
                plots.learning_curves(data.runs, epochs, dataset, out_dir)]
        data.plots[dataset] = [p for p in made if p is not None]


def reported_runs(runs: pd.DataFrame, searches: set[str]) -> pd.DataFrame:
    """The runs the tables show: every row but the trials of a `bench study` search (their `/final` re-runs stay)."""
    return runs[~runs["study"].isin(searches)]


def _study_names(runs: pd.DataFrame) -> set[str]:
    """The studies of these runs, and the search behind each `<name>/final`."""
    names = {str(n) for n in runs["study"].dropna()}
    return names | {n[: -len(FINAL_SUFFIX)] for n in names if n.endswith(FINAL_SUFFIX)}


def build_report(db_url: str, out_dir: Path, where: str | None = None,
                 title: str = "distill-bench report") -> ReportData:
    """Load the runs, compute tables and tests, draw the plots into `out_dir`."""
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
    _dataset_plots(data, db_url, out_dir)
    names = None if where is None else _study_names(all_runs)
    data.studies = study_reports(db_url, names, out_dir)
    sources = [f"{study.name}: {study.source_file}" for study in data.studies if study.source_file]
    if sources:
        data.provenance.insert(3, ("grid files", ", ".join(sources)))
    return data


def write_report(db_url: str, out_dir: Path, where: str | None = None,
                 formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:
    """Write the chosen formats (and every plot as PNG + SVG) into `out_dir`; returns the paths."""
    from bench.report import export, html, latex, markdown

    data = build_report(db_url, out_dir, where)
    written: list[Path] = []
    if "md" in formats:
        written.append(markdown.write(data, out_dir / "report.md"))
    if "html" in formats:
        written.append(html.write(data, out_dir / "report.html"))
    if "csv" in formats:
        written += export.write_csv(data, out_dir)
    if "tex" in formats:
        written.append(latex.write(data, out_dir / "tables.tex"))
    for plot_list in [*data.plots.values(), *(s.plots for s in data.studies)]:
        written += [path for plot in plot_list for path in (plot.png, plot.svg)]
    return written
