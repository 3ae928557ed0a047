"""`bench report`: build the report once and write each chosen format (the only module that imports the writers)."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.report.build import build_report
from bench.report.export import write_csv
from bench.report.html import write as write_html
from bench.report.latex import write as write_latex
from bench.report.markdown import write as write_markdown

FORMATS = ("md", "html", "csv", "tex")
DEFAULT_FORMATS = ("md", "html", "csv")


def parse_formats(text: str) -> tuple[str, ...]:
    """'md,html' -> ('md', 'html'); an unknown format is a BenchError."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise BenchError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def write_report(db_url: str, out_dir: Path, where: str | None = None,
                 formats: tuple[str, ...] = DEFAULT_FORMATS, published: Path | None = None) -> list[Path]:
    """Write the chosen formats (and every plot as PNG + SVG) into `out_dir`; returns the paths."""
    data = build_report(db_url, out_dir, where, published=published)
    written: list[Path] = []
    if "md" in formats:
        written.append(write_markdown(data, out_dir / "report.md"))
    if "html" in formats:
        written.append(write_html(data, out_dir / "report.html"))
    if "csv" in formats:
        written += write_csv(data, out_dir)
    if "tex" in formats:
        written.append(write_latex(data, out_dir / "tables.tex"))
    for plot_list in [*data.plots.values(), *(s.plots for s in data.studies)]:
        written += [path for plot in plot_list for path in (plot.png, plot.svg)]
    return written
