"""What one report shows (`ReportData`): built by build.py, rendered by each writer (markdown, html, latex, csv)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.report.plots import Plot
from bench.report.studies import StudyReport
from bench.report.tables import Matrix


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
    plots: dict[str, list[Plot]] = field(default_factory=dict)
    studies: list[StudyReport] = field(default_factory=list)
    all_runs: pd.DataFrame | None = None  # every matched row, study search trials included (runs.csv)
    published: pd.DataFrame = field(default_factory=pd.DataFrame)  # settings beside published figures (--published)

    @property
    def datasets(self) -> list[str]:
        """Datasets with at least one run, sorted."""
        return sorted(self.runs["dataset"].unique())

    @property
    def unfinished(self) -> pd.DataFrame:
        """Runs whose status is not 'done' (failed, pruned, running): shown, never dropped."""
        return self.runs[self.runs["status"] != "done"]
