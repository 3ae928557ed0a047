"""report.md: the matrix tables, baseline comparison, unfinished runs, plots, studies and provenance."""

from __future__ import annotations

from pathlib import Path

from bench.report.contents import ReportData
from bench.report.cost import COST_HEADER, COST_NOTE, cost_rows, has_cost
from bench.report.published import HEADER as PUBLISHED_HEADER
from bench.report.published import NOTE as PUBLISHED_NOTE
from bench.report.published import published_cells
from bench.report.stats import gain_caption, gain_cells, gain_header, has_settings
from bench.report.tables import (
    PROBLEM_HEADER,
    Matrix,
    marks_text,
    matrix_header,
    matrix_note,
    metric_label,
    problem_cells,
    warning_lines,
)
from bench.report.view_cost import VIEW_COST_HEADER, VIEW_COST_NOTE, view_cost_rows


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _matrix(matrix: Matrix) -> list[str]:
    rows = []
    for index in range(len(matrix.rows)):
        cells = []
        for teacher in matrix.teachers:
            cell = matrix.cells.get((index, teacher))
            if cell is None:
                cells.append("")
                continue
            value = f"**{cell.text()}**" if cell.best else cell.text()
            interval = f" {cell.ci_text()}" if cell.ci_text() else ""
            marks = marks_text(matrix.cell_marks.get((index, teacher)))
            cells.append(f"{value}{interval} ({cell.detail()}){marks}")
        rows.append([*matrix.row_key(index), *cells])
    return [
        f"### {matrix.dataset}, {matrix.epochs}-epoch budget: {metric_label(matrix.metric)}",
        "",
        matrix_note(matrix, "**bold**"),
        "",
        *table(matrix_header(matrix), rows),
        *([f"Warnings: {line}  " for line in warning_lines(matrix)] + [""] if matrix.notes else []),
    ]


def _gains(data: ReportData, dataset: str) -> list[str]:
    gains = data.gains[data.gains["dataset"] == dataset]
    if gains.empty:
        return [f"No baseline comparison for {dataset}: no method has finished runs paired with a `scratch` run "
                "of the same student, teacher, epochs and seed.", ""]
    return [f"### {dataset}: gain over the same student trained from scratch", "",
            gain_caption(data.gains), "",
            *table(gain_header(has_settings(gains)),
                   [gain_cells(row, has_settings(gains)) for _, row in gains.iterrows()])]


def _published(data: ReportData, dataset: str) -> list[str]:
    rows = data.published[data.published["dataset"] == dataset] if not data.published.empty else data.published
    if rows.empty:
        return []
    sources = "; ".join(sorted(set(rows["source"])))
    return [f"### {dataset}: beside the published figures", "", f"{PUBLISHED_NOTE} Source: {sources}.", "",
            *table(PUBLISHED_HEADER, [published_cells(row) for _, row in rows.iterrows()])]


def _cost(data: ReportData, dataset: str) -> list[str]:
    rows = cost_rows(data.summary, data.runs, dataset)
    if not has_cost(rows):
        return []
    return [f"### {dataset}: inference cost and speed-up", "", COST_NOTE, "", *table(COST_HEADER, rows)]


def _view_cost(data: ReportData, dataset: str) -> list[str]:
    rows = view_cost_rows(data.runs, dataset)
    if not rows:
        return []
    return [f"### {dataset}: training cost of teacher views", "", VIEW_COST_NOTE, "", *table(VIEW_COST_HEADER, rows)]


def _plots(data: ReportData, dataset: str) -> list[str]:
    lines = []
    for plot in data.plots.get(dataset, []):
        lines += [f"![{plot.title}]({plot.png.name})", "", f"*{plot.caption}* ([SVG]({plot.svg.name}))", ""]
    return lines


def _studies(data: ReportData) -> list[str]:
    if not data.studies:
        return []
    lines = ["## Optuna studies", ""]
    for study in data.studies:
        trials = ", ".join(f"{n} {s}" for s, n in sorted(study.trials.items())) or "no trials"
        lines += [f"### study {study.name}", "", f"Directions: {', '.join(study.directions)}; trials: {trials}.", ""]
        lines += [f"- {line}" for line in study.summary_lines()] + ([""] if study.summary_lines() else [])
        for plot in study.plots:
            lines += [f"![{plot.title}]({plot.png.name})", "", f"*{plot.caption}*", ""]
        lines += [f"- {note}" for note in study.notes] + ([""] if study.notes else [])
    return lines


def render(data: ReportData) -> str:
    """The whole report as Markdown text."""
    lines = [f"# {data.title}", ""]
    for dataset in data.datasets:
        lines += [f"## {dataset}", ""]
        for matrix in (m for m in data.matrices if m.dataset == dataset):
            lines += _matrix(matrix)
        lines += _gains(data, dataset) + _published(data, dataset) + _cost(data, dataset) + _view_cost(data, dataset)
        lines += _plots(data, dataset)
    if not data.unfinished.empty:
        lines += ["## Runs that did not finish", "",
                  *table(PROBLEM_HEADER, [problem_cells(row) for _, row in data.unfinished.iterrows()])]
    lines += _studies(data)
    lines += ["## Provenance", "", *(f"- {label}: {value}" for label, value in data.provenance), ""]
    return "\n".join(lines)


def write(data: ReportData, path: Path) -> Path:
    """Write report.md."""
    path.write_text(render(data))
    return path
