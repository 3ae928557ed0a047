"""Markdown tables per dataset and teacher (student x method), plus provenance and a size plot."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

PROBE_METHOD = "teacher-probe"


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean/std over seeds per (dataset, teacher, student, method, epochs) for finished runs."""
    done = runs[(runs["status"] == "done") & (runs["method"] != PROBE_METHOD)]
    keys = ["dataset", "teacher", "student", "student_kind", "method", "epochs"]
    grouped = done.groupby(keys, dropna=False)
    table = grouped.agg(
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        seeds=("seed", "nunique"),
        pct_of_teacher=("pct_of_teacher", "mean"),
        params=("params", "mean"),
        size_mb=("size_mb", "mean"),
        inference_size_mb=("inference_size_mb", "mean"),
        epoch_seconds=("epoch_seconds", "mean"),
    ).reset_index()
    return table.sort_values(["dataset", "teacher", "test_acc_mean"], ascending=[True, True, False])


def _fmt_acc(mean: float, std: float, seeds: int) -> str:
    spread = f" ± {std * 100:.1f}" if seeds > 1 and pd.notna(std) else ""
    return f"{mean * 100:.1f}{spread}"


def _section(dataset: str, teacher: str, rows: pd.DataFrame, probes: pd.DataFrame) -> list[str]:
    lines = [f"## {dataset} — teacher {teacher}", ""]
    probe = probes[(probes["dataset"] == dataset) & (probes["teacher"] == teacher)]
    if not probe.empty:
        first = probe.iloc[0]
        config = first["data_config"]
        config = json.loads(config) if isinstance(config, str) else dict(config or {})
        lines.append(
            f"Teacher reference (linear probe on frozen features): test accuracy "
            f"**{first['test_acc'] * 100:.1f}%**; teacher input size "
            f"{config.get('image_size') or 'native'} px; split sizes train/val/test limited to "
            f"{config.get('train_limit')}/{config.get('val_limit')}/{config.get('test_limit')}."
        )
        lines.append("")
    lines += [
        "| student | kind | method | epochs | test acc % (mean ± std, seeds) | % of teacher "
        "| params | size MB | inference MB | epoch s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = rows["test_acc_mean"].max()
    for row in rows.itertuples():
        acc = _fmt_acc(row.test_acc_mean, row.test_acc_std, row.seeds)
        acc = f"**{acc}**" if row.test_acc_mean == best else acc
        lines.append(
            f"| {row.student} | {row.student_kind} | {row.method} | {row.epochs} | {acc} ({row.seeds}) "
            f"| {row.pct_of_teacher:.1f} | {int(row.params):,} | {row.size_mb:.3f} "
            f"| {row.inference_size_mb:.2f} | {row.epoch_seconds:.2f} |"
        )
    return [*lines, ""]


def _provenance(runs: pd.DataFrame) -> list[str]:
    done = runs[runs["status"] == "done"]
    hits, misses = int(done["cache_hits"].fillna(0).sum()), int(done["cache_misses"].fillna(0).sum())
    lines = ["## Provenance", ""]
    passes = done.groupby(["teacher", "dataset"])["teacher_pass_s"].max()
    for (teacher, dataset), seconds in passes.items():
        lines.append(f"- teacher pass {teacher} on {dataset} (train+val+test): {seconds:.1f} s")
    lines.append(f"- feature cache: {hits} hits, {misses} misses over {len(done)} runs")
    for column in ("device", "torch_version", "git_commit"):
        values = ", ".join(sorted(str(v) for v in done[column].dropna().unique()))
        lines.append(f"- {column}: {values}")
    if len(done):
        lines.append(f"- runs finished between {done['finished_at'].min()} and {done['finished_at'].max()}")
    return [*lines, ""]


def _problems(runs: pd.DataFrame) -> list[str]:
    bad = runs[runs["status"] != "done"]
    if bad.empty:
        return []
    lines = [
        "## Runs that did not finish",
        "",
        "| student | method | teacher | dataset | seed | status | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in bad.itertuples():
        error = str(row.error or "").replace("|", "/").splitlines()[0][:120] if row.error else ""
        lines.append(
            f"| {row.student} | {row.method} | {row.teacher} | {row.dataset} | {row.seed} | {row.status} | {error} |"
        )
    return [*lines, ""]


def _plot(summary: pd.DataFrame, dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary[summary["dataset"] == dataset]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(sorted(rows["student"].unique()), "osD^v<>pP*X", strict=False))
    for method, group in rows.groupby("method"):
        for row in group.itertuples():
            axis.scatter(
                row.size_mb,
                row.test_acc_mean * 100,
                marker=markers[row.student],
                label=f"{method}",
                color=f"C{sorted(rows['method'].unique()).index(method)}",
            )
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), title="method", fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("student size (MB, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(
        f"{dataset}: accuracy vs size (marker = student: " + ", ".join(f"{m} {s}" for s, m in markers.items()) + ")",
        fontsize=8,
    )
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(runs: pd.DataFrame, out_dir: Path, title: str = "distill-bench report") -> list[Path]:
    """Write report.md and one accuracy-vs-size PNG per dataset; returns the written paths."""
    if runs.empty:
        raise BenchError("no runs to report (the database is empty or the filter matched nothing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    probes = runs[(runs["method"] == PROBE_METHOD) & (runs["status"] == "done")]
    lines = [f"# {title}", ""]
    written: list[Path] = []
    for (dataset, teacher), rows in summary.groupby(["dataset", "teacher"], sort=True):
        lines += _section(dataset, teacher, rows, probes)
    for dataset in sorted(summary["dataset"].unique()):
        plot_path = out_dir / f"acc_vs_size_{dataset}.png"
        _plot(summary, dataset, plot_path)
        lines += [f"![accuracy vs size on {dataset}]({plot_path.name})", ""]
        written.append(plot_path)
    lines += _problems(runs) + _provenance(runs)
    report_path = out_dir / "report.md"
    report_path.write_text("\n".join(lines))
    return [report_path, *written]
