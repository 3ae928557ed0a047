"""tables.tex: the matrix tables as booktabs tabulars (written by hand; no jinja2 needed)."""

from __future__ import annotations

from pathlib import Path

from bench.report.contents import ReportData
from bench.report.stats import gain_caption, gain_cells, gain_header, has_settings
from bench.report.tables import CI_LEGEND, Matrix, matrix_header, metric_label

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """LaTeX-escape plain text."""
    return "".join(SPECIAL.get(c, c) for c in str(text)).replace("±", r"$\pm$").replace("–", "--")


def _tabular(header: list[str], rows: list[list[str]], caption: str, label: str) -> list[str]:
    return [r"\begin{table}[ht]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(header) + "}",
            r"\toprule", " & ".join(escape(h) for h in header) + r" \\", r"\midrule",
            *(" & ".join(row) + r" \\" for row in rows), r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}", r"\end{table}", ""]


def _matrix(matrix: Matrix) -> list[str]:
    rows = []
    for index in range(len(matrix.rows)):
        cells = [escape(k) for k in matrix.row_key(index)]
        for teacher in matrix.teachers:
            cell = matrix.cells.get((index, teacher))
            text = "" if cell is None else escape(" ".join(p for p in (cell.text(), cell.ci_text()) if p))
            cells.append(rf"\textbf{{{text}}}" if cell is not None and cell.best else text)
        rows.append(cells)
    caption = (f"{matrix.dataset}, {matrix.epochs}-epoch budget: {metric_label(matrix.metric)}, one row per setting, "
               f"mean ± std over seeds [{CI_LEGEND}]; bold = best per teacher column.")
    return _tabular(matrix_header(matrix), rows, caption, f"tab:{matrix.dataset}-{matrix.epochs}ep")


def render(data: ReportData) -> str:
    """Every matrix and baseline table; needs \\usepackage{booktabs}."""
    lines = ["% distill-bench tables; needs \\usepackage{booktabs}", ""]
    for matrix in data.matrices:
        lines += _matrix(matrix)
    for dataset, gains in data.gains.groupby("dataset", sort=True):
        named = has_settings(gains)
        rows = [[escape(c) for c in gain_cells(row, named)] for _, row in gains.iterrows()]
        caption = f"{dataset}: gain over scratch. {gain_caption(data.gains)}"
        lines += _tabular(gain_header(named), rows, caption, f"tab:{dataset}-gain")
    return "\n".join(lines)


def write(data: ReportData, path: Path) -> Path:
    """Write tables.tex."""
    path.write_text(render(data))
    return path
