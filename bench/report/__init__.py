"""Reports read the database into pandas and never import torch."""

from bench.report.load import load_runs
from bench.report.markdown import write_report

__all__ = ["load_runs", "write_report"]
