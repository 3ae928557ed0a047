"""CSV files: the per-setting summary, the baseline comparison and every run (JSON columns as text)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report.contents import ReportData


def write_csv(data: ReportData, out_dir: Path) -> list[Path]:
    """Write summary.csv, baseline.csv and runs.csv (and published.csv with --published); returns their paths."""
    paths = [out_dir / "summary.csv", out_dir / "baseline.csv", out_dir / "runs.csv"]
    summary = data.summary.drop(columns=["setting_order", "hparams_key", "data_key"], errors="ignore")
    for column in ("hparams", "data_config"):
        if column in summary:
            summary[column] = [json.dumps(v, sort_keys=True) for v in summary[column]]
    summary.to_csv(paths[0], index=False)
    data.gains.to_csv(paths[1], index=False)
    runs = (data.all_runs if data.all_runs is not None else data.runs).copy()
    for column in ("hparams", "data_config"):
        runs[column] = [json.dumps(v, sort_keys=True) for v in runs[column]]
    runs.to_csv(paths[2], index=False)
    if not data.published.empty:  # --published: each matched setting beside the paper's figure
        paths.append(out_dir / "published.csv")
        data.published.to_csv(paths[-1], index=False)
    return paths
