"""report.html: one self-contained page (inline CSS, base64 PNGs, no scripts, no network)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from bench.report.contents import ReportData
from bench.report.cost import COST_HEADER, COST_NOTE, cost_rows, has_cost
from bench.report.plots import Plot
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

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.best { font-weight: bold; background: #e6f4e6; }
span.detail { color: #666; font-size: 0.85em; display: block; }
span.ci { color: #444; font-size: 0.85em; display: block; }
tr.problem td { background: #fdecea; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; max-width: 60em; }
p.note { color: #555; max-width: 60em; }
span.warn, p.warn { color: #a15c00; font-weight: bold; } p.warn { max-width: 60em; margin: 0.2em 0; }
"""


def _table(header: list[str], rows: list[list[str]], css: str = "", row_class: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    cls = f' class="{row_class}"' if row_class else ""
    body = "".join(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _matrix(matrix: Matrix) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in matrix_header(matrix))
    body = []
    for index in range(len(matrix.rows)):
        cells = "".join(f"<td>{escape(k)}</td>" for k in matrix.row_key(index))
        for teacher in matrix.teachers:
            cell = matrix.cells.get((index, teacher))
            if cell is None:
                cells += "<td></td>"
                continue
            css = ' class="best"' if cell.best else ""
            interval = f'<span class="ci">{escape(cell.ci_text())}</span>' if cell.ci_text() else ""
            marks = marks_text(matrix.cell_marks.get((index, teacher)))
            warned = f'<span class="warn">{escape(marks)}</span>' if marks else ""
            cells += (f'<td{css}>{escape(cell.text())}{warned}{interval}'
                      f'<span class="detail">{escape(cell.detail())}</span></td>')
        body.append(f"<tr>{cells}</tr>")
    return (f"<h3>{escape(matrix.dataset)}, {matrix.epochs}-epoch budget: {escape(metric_label(matrix.metric))}</h3>"
            f'<p class="note">{escape(matrix_note(matrix, "highlighted"))}</p>'
            f'<table class="matrix"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + "".join(f'<p class="warn">{escape(line)}</p>' for line in warning_lines(matrix)))


def _figure(plot: Plot) -> str:
    encoded = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{escape(plot.caption)} (SVG: {escape(plot.svg.name)})</figcaption></figure>")


def _dataset(data: ReportData, dataset: str) -> str:
    parts = [f"<h2>{escape(dataset)}</h2>"]
    parts += [_matrix(m) for m in data.matrices if m.dataset == dataset]
    gains = data.gains[data.gains["dataset"] == dataset]
    if gains.empty:
        parts.append('<p class="note">No baseline comparison: no method has finished runs paired with a scratch '
                     "run of the same student, teacher, epochs and seed.</p>")
    else:
        parts += [f"<h3>{escape(dataset)}: gain over the same student trained from scratch</h3>",
                  f'<p class="note">{escape(gain_caption(data.gains))}</p>',
                  _table(gain_header(has_settings(gains)),
                         [gain_cells(row, has_settings(gains)) for _, row in gains.iterrows()], "gains")]
    cost = cost_rows(data.summary, data.runs, dataset)
    if has_cost(cost):
        parts += [f"<h3>{escape(dataset)}: inference cost and speed-up</h3>",
                  f'<p class="note">{escape(COST_NOTE)}</p>', _table(COST_HEADER, cost, "cost")]
    view_cost = view_cost_rows(data.runs, dataset)
    if view_cost:
        parts += [f"<h3>{escape(dataset)}: training cost of teacher views</h3>",
                  f'<p class="note">{escape(VIEW_COST_NOTE)}</p>', _table(VIEW_COST_HEADER, view_cost, "cost")]
    parts += [_figure(p) for p in data.plots.get(dataset, [])]
    return "\n".join(parts)


def _studies(data: ReportData) -> str:
    if not data.studies:
        return ""
    parts = ["<h2>Optuna studies</h2>"]
    for study in data.studies:
        trials = ", ".join(f"{n} {s}" for s, n in sorted(study.trials.items())) or "no trials"
        parts.append(f"<h3>study {escape(study.name)}</h3><p class=\"note\">Directions: "
                     f"{escape(', '.join(study.directions))}; trials: {escape(trials)}.</p>")
        parts += [f'<p class="note">{escape(line)}</p>' for line in study.summary_lines()]
        parts += [_figure(p) for p in study.plots]
        parts += [f'<p class="note">{escape(note)}</p>' for note in study.notes]
    return "\n".join(parts)


def render(data: ReportData) -> str:
    """The whole report as one HTML document with nothing fetched from outside."""
    parts = [f"<h1>{escape(data.title)}</h1>"] + [_dataset(data, d) for d in data.datasets]
    if not data.unfinished.empty:
        rows = [problem_cells(row) for _, row in data.unfinished.iterrows()]
        parts += ["<h2>Runs that did not finish</h2>", _table(PROBLEM_HEADER, rows, "problems", "problem")]
    parts.append(_studies(data))
    items = "".join(f"<li><b>{escape(label)}</b>: {escape(value)}</li>" for label, value in data.provenance)
    parts.append(f'<h2>Provenance</h2><ul class="provenance">{items}</ul>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(data.title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write(data: ReportData, path: Path) -> Path:
    """Write report.html."""
    path.write_text(render(data), encoding="utf-8")
    return path
