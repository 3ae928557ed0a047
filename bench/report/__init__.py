"""Reports read the database into pandas and never import torch.

The package re-exports the entry points of `write` (which imports the writers) and `load`; no module of
the package imports the package itself, so the writers and the builder never import each other.
"""

from bench.report.build import build_report
from bench.report.load import load_runs
from bench.report.write import FORMATS, parse_formats, write_report

__all__ = ["FORMATS", "build_report", "load_runs", "parse_formats", "write_report"]
