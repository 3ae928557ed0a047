"""Matplotlib (Agg) figures, each saved as PNG and SVG: accuracy vs size, epoch time, learning curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def accuracy_vs_size(summary: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Score vs student size (log x), colour = method, marker = student, Pareto front drawn."""
    rows = summary[(summary["dataset"] == dataset) & (summary["seeds"] > 0)].copy()
    rows = rows[rows["size_mb"] > 0]
    if rows.empty:
        return None
    plt = pyplot()
    rows["score_pct"] = rows["score_mean"] * 100
    methods, students = sorted(rows["method"].unique()), sorted(rows["student"].unique())
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for row in rows.itertuples():
        axis.scatter(row.size_mb, row.score_pct, color=f"C{methods.index(row.method)}",
                     marker=MARKERS[students.index(row.student) % len(MARKERS)], s=40, alpha=0.8)
    for index, method in enumerate(methods):
        axis.scatter([], [], color=f"C{index}", marker="s", label=f"method {method}")
    for student in students:
        axis.scatter([], [], color="grey", marker=MARKERS[students.index(student) % len(MARKERS)], label=student)
    front = pareto_front(rows, "size_mb", "score_pct")
    axis.step(front["size_mb"], front["score_pct"], where="post", color="black", lw=1.5, alpha=0.7,
              label="Pareto front")
    for row in front.itertuples():
        axis.annotate(f"{row.student}/{row.method}/{row.teacher}/{row.epochs}ep", (row.size_mb, row.score_pct),
                      fontsize=6, xytext=(3, -8), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("student size (MB, log scale)")
    axis.set_ylabel(metric_label(rows["metric"].iloc[0]) + " (mean over seeds)")
    axis.set_title(f"{dataset}: {metric_label(rows['metric'].iloc[0])} vs size")
    axis.grid(alpha=0.3, which="both")
    _legend(axis, loc="lower right")
    caption = (f"Each point is one student/method/teacher/epoch budget (mean over seeds); colour = method, "
               f"marker = student. The black steps join the Pareto front ({len(front)} points): nothing else is "
               f"both smaller and better.")
    return save(figure, out_dir, f"acc_vs_size_{dataset}", f"{dataset}: accuracy vs size", caption)


def epoch_time(summary: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Mean seconds per epoch, bars per (method, teacher), one panel per student."""
    rows = summary[(summary["dataset"] == dataset) & summary["epoch_seconds"].notna()]
    if rows.empty:
        return None
    plt = pyplot()
    students, teachers = sorted(rows["student"].unique()), sorted(rows["teacher"].unique())
    figure, axes = plt.subplots(1, len(students), figsize=(3.2 * len(students) + 1, 3.8), sharey=True,
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
    _legend(axes[0][-1], title="teacher")
    figure.suptitle(f"{dataset}: epoch time per method and teacher", fontsize=10)
    caption = "Mean wall time of one training epoch (over seeds and epoch budgets); bars = teacher."
    return save(figure, out_dir, f"epoch_time_{dataset}", f"{dataset}: epoch time", caption)


def learning_curves(runs: pd.DataFrame, epochs: pd.DataFrame, dataset: str, out_dir: Path) -> Plot | None:
    """Val accuracy and train loss per epoch (mean over seeds), one column per student."""
    mine = runs[(runs["dataset"] == dataset)][["id", "student", "method", "teacher", "epochs"]]
    curves = epochs.merge(mine, left_on="run_id", right_on="id")
    if curves.empty:
        return None
    budget = curves["epochs"].max()
    curves = curves[curves["epochs"] == budget]
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    students, teachers = sorted(curves["student"].unique()), sorted(curves["teacher"].unique())
    methods = sorted(curves["method"].unique())
    figure, axes = plt.subplots(2, len(students), figsize=(3.4 * len(students) + 1, 5.6), sharex=True,
                                squeeze=False)
    means = curves.groupby(["student", "method", "teacher", "epoch"])[["val_acc", "train_loss"]].mean()
    for column, student in enumerate(students):
        for (stud, method, teacher), line in means.groupby(level=[0, 1, 2]):
            if stud != student:
                continue
            x = line.index.get_level_values("epoch") + 1
            style = dict(color=f"C{methods.index(method)}", ls=LINESTYLES[teachers.index(teacher) % 4], marker=".",
                         label=f"{method} / {teacher}")
            axes[0][column].plot(x, line["val_acc"] * 100, **style)
            axes[1][column].plot(x, line["train_loss"], **style)
        axes[0][column].set_title(student, fontsize=9)
        axes[1][column].set_xlabel("epoch")
        axes[1][column].xaxis.set_major_locator(MaxNLocator(integer=True))
        for axis in axes[:, column]:
            axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("val accuracy %")
    axes[1][0].set_ylabel("train loss (weighted sum)")
    _legend(axes[0][-1], title="method / teacher")
    figure.suptitle(f"{dataset}: learning curves ({budget}-epoch runs, mean over seeds)", fontsize=10)
    caption = f"Per-epoch validation accuracy and training loss from run_epochs, runs with the {budget}-epoch budget."
    return save(figure, out_dir, f"learning_curves_{dataset}", f"{dataset}: learning curves", caption)
