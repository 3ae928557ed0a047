"""Reports read the database into pandas and never import torch."""

from bench.report.build import FORMATS, build_report, parse_formats, write_report
from bench.report.load import load_runs

__all__ = ["FORMATS", "build_report", "load_runs", "parse_formats", "write_report"]
