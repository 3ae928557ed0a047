"""Matplotlib (Agg) figures, each saved as PNG and SVG: accuracy vs size and vs latency, epoch time, learning curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.tables import metric_label

MARKERS = "osD^v<>pP*Xh"
LINESTYLES = ["-", "--", ":", "-."]


@dataclass(frozen=True)
class Plot:
    """One written figure: what it shows, where its PNG and SVG are."""

    title: str
    caption: str
    png: Path
    svg: Path


def pyplot():  # noqa: ANN201 - matplotlib.pyplot, imported lazily with the Agg backend
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, out_dir: Path, stem: str, title: str, caption: str) -> Plot:  # noqa: ANN001
    """Write `stem`.png and `stem`.svg and close the figure."""
    plt = pyplot()
    figure.tight_layout()
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    figure.savefig(png, dpi=110)
    figure.savefig(svg)
    plt.close(figure)
    return Plot(title, caption, png, svg)


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points no other point beats on both axes (smaller x and larger y), sorted by x."""
    ordered = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], float("-inf")
    for index, row in ordered.iterrows():
        if row[y] > best:
            front.append(index)
            best = row[y]
    return ordered.loc[front]


def _legend(axis, **kwargs) -> None:  # noqa: ANN001
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        axis.legend(unique.values(), unique.keys(), fontsize=7, **kwargs)


def _score_panel(axis, rows: pd.DataFrame, x: str, methods: list[str], students: list[str]) -> int:  # noqa: ANN001
    """Score vs `x` (log x) on one axis: colour = method, marker = student, CI bars, the Pareto front annotated."""
    rows = rows[rows[x].notna() & (rows[x] > 0) & np.isfinite(rows[x])]
    for row in rows.itertuples():
        colour = f"C{methods.index(row.method) % 10}"
        value = getattr(row, x)
        if pd.notna(row.ci_low):  # the 95% CI of the mean over seeds; none with one seed
            axis.errorbar(value, row.score_pct, yerr=[[row.score_pct - row.ci_low * 100],
                                                      [row.ci_high * 100 - row.score_pct]],
                          color=colour, lw=1, capsize=3, alpha=0.6)
        axis.scatter(value, row.score_pct, color=colour, marker=MARKERS[students.index(row.student) % len(MARKERS)],
                     s=40, alpha=0.8)
    front = pareto_front(rows, x, "score_pct")
    axis.step(front[x], front["score_pct"], where="post", color="black", lw=1.5, alpha=0.7, label="Pareto front")
    for row in front.itertuples():
        setting = f" {row.setting}" if row.setting else ""
        axis.annotate(f"{row.student}/{row.method}/{row.teacher}/{row.epochs}ep{setting}",
                      (getattr(row, x), row.score_pct), fontsize=6, xytext=(3, -8), textcoords="offset points")
    axis.set_xscale("log")
    axis.grid(alpha=0.3, which="both")
    return len(front)


def _legend_panel(axis, methods: list[str], students: list[str], extra: list[tuple[str, str, str]]) -> None:  # noqa: ANN001
    """The legend in its own blank panel beside the plots, so that it never covers a point."""
    for index, method in enumerate(methods):
        axis.scatter([], [], color=f"C{index % 10}", marker="s", label=f"method {method}")
    for student in students:
        axis.scatter([], [], color="grey", marker=MARKERS[students.index(student) % len(MARKERS)], label=student)
    for label, colour, marker in extra:
        axis.scatter([], [], color=colour, marker=marker, s=90, label=label)
    axis.plot([], [], color="black", lw=1.5, label="Pareto front")
    axis.axis("off")
    axis.legend(loc="center left", fontsize=7, frameon=False)


def _scored(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    rows = summary[(summary["dataset"] == dataset) & (summary["seeds"] > 0)].copy()
    rows["score_pct"] = rows["score_mean"] * 100
    return rows


def accuracy_vs_size(summary: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Score vs the student's own size and vs its inference footprint (a head student carries its backbone)."""
    rows = _scored(summary, dataset)
    rows = rows[rows["size_mb"] > 0]
    if rows.empty:
        return None
    plt = pyplot()
    methods, students = sorted(rows["method"].unique()), sorted(rows["student"].unique())
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1, 0.45]})
    fronts = []
    for axis, column, label in ((axes[0], "size_mb", "student weights (MB, log scale)"),
                                (axes[1], "inference_size_mb", "inference footprint (MB, log scale)")):
        fronts.append(_score_panel(axis, rows, column, methods, students))
        axis.set_xlabel(label)
        axis.set_ylabel(metric_label(rows["metric"].iloc[0]) + " (mean over seeds)")
    axes[0].set_title("vs student size", fontsize=9)
    axes[1].set_title("vs inference footprint (head students + teacher backbone)", fontsize=9)
    _legend_panel(axes[2], methods, students, [])
    figure.suptitle(f"{dataset}: {metric_label(rows['metric'].iloc[0])} vs size", fontsize=10)
    caption = (f"Each point is one setting (student/method/teacher/epoch budget/hparams; mean over seeds, error bar = "
               f"95% CI, t over seeds, none with one seed); colour = method, marker = student. Left: the student's "
               f"own weights; right: what inference needs (a head student carries its teacher backbone, a "
               f"joint-space run its projection). The black steps join the Pareto fronts ({fronts[0]} and "
               f"{fronts[1]} points): nothing else is both smaller and better. The legend has its own panel.")
    return save(figure, out_dir, f"acc_vs_size_{dataset}", f"{dataset}: accuracy vs size", caption)


def accuracy_vs_latency(summary: pd.DataFrame, teachers: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Score vs batch-1 inference latency (log x) with its Pareto front; the teachers as stars."""
    rows = _scored(summary, dataset)
    if "latency_ms" not in rows or not bool((rows["latency_ms"].notna() & np.isfinite(rows["latency_ms"])).any()):
        return None
    plt = pyplot()
    methods, students = sorted(rows["method"].unique()), sorted(rows["student"].unique())
    figure, axes = plt.subplots(1, 2, figsize=(9.5, 4.8), gridspec_kw={"width_ratios": [1, 0.45]})
    axis = axes[0]
    front = _score_panel(axis, rows, "latency_ms", methods, students)
    shown = teachers[teachers["latency_ms"].notna() & teachers["score"].notna()] if not teachers.empty else teachers
    for row in shown.itertuples():
        axis.scatter(row.latency_ms, row.score * 100, color="gold", edgecolors="black", marker="*", s=160, zorder=3)
        axis.annotate(f"teacher {row.teacher}", (row.latency_ms, row.score * 100), fontsize=6, xytext=(4, 4),
                      textcoords="offset points")
    axis.set_xlabel("inference latency, batch 1 (median ms, log scale)")
    axis.set_ylabel(metric_label(rows["metric"].iloc[0]) + " (mean over seeds)")
    axis.set_title(f"{dataset}: {metric_label(rows['metric'].iloc[0])} vs latency", fontsize=10)
    _legend_panel(axes[1], methods, students, [("teacher", "gold", "*")] if len(shown) else [])
    caption = (f"Each point is one student setting at its deployed latency (batch 1, median ms on the run's device; "
               f"a head student includes its teacher backbone); stars = teachers with their reference head. "
               f"The black steps join the Pareto front of the students ({front} points): nothing else is both "
               f"faster and better. The legend has its own panel.")
    return save(figure, out_dir, f"acc_vs_latency_{dataset}", f"{dataset}: accuracy vs latency", caption)


def epoch_time(summary: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Mean seconds per epoch, bars per (method, teacher), one panel per student."""
    rows = summary[(summary["dataset"] == dataset) & summary["epoch_seconds"].notna()]
    if rows.empty:
        return None
    plt = pyplot()
    students, teachers = sorted(rows["student"].unique()), sorted(rows["teacher"].unique())
    figure, axes = plt.subplots(1, len(students), figsize=(3.2 * len(students) + 2.2, 3.8), sharey=True,
                                squeeze=False)
    width = 0.8 / len(teachers)
    for axis, student in zip(axes[0], students, strict=True):
        mine = rows[rows["student"] == student].groupby(["method", "teacher"])["epoch_seconds"].mean()
        methods = sorted({m for m, _ in mine.index})
        for t_index, teacher in enumerate(teachers):
            heights = [mine.get((m, teacher), float("nan")) for m in methods]
            positions = [i + (t_index - (len(teachers) - 1) / 2) * width for i in range(len(methods))]
            axis.bar(positions, heights, width=width, color=f"C{t_index}", label=teacher)
        axis.set_xticks(range(len(methods)), methods, rotation=30, fontsize=8)
        axis.set_title(student, fontsize=9)
        axis.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("seconds per epoch (mean)")
    _legend(axes[0][-1], title="teacher", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    figure.suptitle(f"{dataset}: epoch time per method and teacher", fontsize=10)
    caption = ("Mean wall time of one training epoch (over seeds and epoch budgets); bars = teacher (legend outside "
               "the panels, so it covers no bar).")
    return save(figure, out_dir, f"epoch_time_{dataset}", f"{dataset}: epoch time", caption)


def _curve_means(runs: pd.DataFrame, epochs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per (student, line, epoch): mean over seeds of val/train accuracy and each unweighted loss term, and the
    spread of val accuracy over seeds (val_min, val_max, seeds: how many runs)."""
    from bench.report.tables import with_setting

    mine = with_setting(runs[runs["dataset"] == dataset])[["id", "student", "method", "teacher", "epochs", "setting"]]
    curves = epochs.merge(mine, left_on="run_id", right_on="id")
    if curves.empty:
        return curves
    curves = curves[curves["epochs"] == curves["epochs"].max()].copy()
    terms = pd.DataFrame([t if isinstance(t, dict) else {} for t in curves["loss_terms"]], index=curves.index)
    curves = pd.concat([curves, terms.add_prefix("term:")], axis=1)
    curves["line"] = [f"{m}{' ' + s if s else ''} / {t}" for m, s, t in
                      zip(curves["method"], curves["setting"], curves["teacher"], strict=True)]
    if "train_acc" not in curves:  # run_epochs.train_acc is newer than some databases
        curves["train_acc"] = float("nan")
    values = ["val_acc", "train_acc", *[c for c in curves if c.startswith("term:")]]
    curves[values] = curves[values].apply(pd.to_numeric, errors="coerce")
    grouped = curves.groupby(["student", "line", "epoch"], as_index=False)
    means = grouped[values].mean()
    spread = grouped["val_acc"].agg(val_min="min", val_max="max", seeds="count")
    means = means.merge(spread, on=["student", "line", "epoch"])
    means.attrs["budget"] = int(curves["epochs"].max())
    return means


def learning_curves(runs: pd.DataFrame, epochs: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Val (and train) accuracy and the unweighted loss terms per epoch (mean over seeds), a column per student."""
    means = _curve_means(runs, epochs, dataset)
    if means.empty:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    budget, students, lines = means.attrs["budget"], sorted(means["student"].unique()), sorted(means["line"].unique())
    terms = [c for c in means if c.startswith("term:") and means[c].notna().any()]
    has_train = bool(means["train_acc"].notna().any())
    figure, axes = plt.subplots(2, len(students), figsize=(3.8 * len(students) + 1.5, 6.2), sharex=True,
                                squeeze=False)
    for column, student in enumerate(students):
        for line, points in means[means["student"] == student].groupby("line"):
            x, colour = points["epoch"] + 1, f"C{lines.index(line) % 10}"
            axes[0][column].plot(x, points["val_acc"] * 100, color=colour, marker=".", label=f"{line} val")
            if points["seeds"].max() > 1:  # the band: min to max over seeds
                axes[0][column].fill_between(x, points["val_min"] * 100, points["val_max"] * 100, color=colour,
                                             alpha=0.2, linewidth=0)
            if points["train_acc"].notna().any():
                axes[0][column].plot(x, points["train_acc"] * 100, color=colour, ls="--", marker="x", ms=4,
                                     label=f"{line} train")
            for index, term in enumerate(terms):
                if points[term].notna().any():
                    axes[1][column].plot(x, points[term], color=colour, ls=LINESTYLES[index % 4],
                                         marker=MARKERS[index % len(MARKERS)], ms=4, label=f"{line}: {term[5:]}")
        axes[0][column].set_title(student, fontsize=9)
        axes[1][column].set_xlabel("epoch")
        axes[1][column].xaxis.set_major_locator(MaxNLocator(integer=True))
        shown = means.loc[means["student"] == student, terms].stack()  # stack drops the terms a method lacks
        if len(shown) and bool((shown > 0).all()):
            axes[1][column].set_yscale("log")
        for axis in axes[:, column]:
            axis.grid(alpha=0.3)
            _legend(axis)
    axes[0][0].set_ylabel("accuracy % (val solid" + (", train dashed)" if has_train else ")"))
    axes[1][0].set_ylabel("loss terms (unweighted)")
    figure.suptitle(f"{dataset}: learning curves ({budget}-epoch runs, mean over seeds)", fontsize=10)
    caption = (f"Per-epoch validation accuracy{' and training accuracy' if has_train else ''} and each unweighted "
               f"loss term (run_epochs.loss_terms; linestyle/marker = term) from runs with the {budget}-epoch "
               f"budget; colour = method, setting and teacher. Lines are means over seeds; the shaded band spans "
               f"the lowest to the highest seed's val accuracy (up to {int(means['seeds'].max())} seeds; no band "
               "with one seed).")
    return save(figure, out_dir, f"learning_curves_{dataset}", f"{dataset}: learning curves", caption)
