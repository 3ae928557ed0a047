"""The README's consistent-teaching table, read from a database holding studies/consistency.yaml's runs.

    PYTHONPATH=$PWD python benchmarks/consistency_table.py --db sqlite:///results.db

Per setting (scratch, then kd under each teacher_views setting): test accuracy mean ± std [95% t interval] over
seeds, the paired difference to kd with fixed views (same seed; paired t-test, scipy.stats.ttest_rel, with Holm's
correction over the view settings compared), the teacher's images and seconds on views (a cached entry's K
passes counted once for the setting, online's per run), the training seconds summed over seeds (epochs x
epoch_seconds; online's teacher forwards are inside them) and their total. Every figure comes from the rows.
"""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd
from scipy.stats import t as student_t
from scipy.stats import ttest_rel
from sqlalchemy import create_engine


def setting_of(row: pd.Series) -> str:
    data = json.loads(row["data_config"]) if isinstance(row["data_config"], str) else row["data_config"]
    if row["method"] == "scratch":
        return "scratch"
    mode = data.get("teacher_views", "fixed")
    return f"kd, cached K={data.get('teacher_view_count', 8)}" if mode == "cached" else f"kd, {mode}"


def interval(scores: list[float]) -> str:
    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return f"{100 * mean:.1f} (n=1)"
    std = pd.Series(scores).std(ddof=1)
    half = float(student_t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return f"{100 * mean:.1f} ± {100 * std:.1f} [{100 * (mean - half):.1f}, {100 * (mean + half):.1f}]"


def holm(pvalues: list[float]) -> list[float]:
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--study", default="consistency")
    args = parser.parse_args()
    runs = pd.read_sql("SELECT method, seed, test_acc, data_config, epochs, epoch_seconds, teacher_view_s, "
                       "teacher_view_images FROM runs WHERE status = 'done' AND study = :study "
                       "AND method IN ('scratch', 'kd')", create_engine(args.db), params={"study": args.study})
    runs["setting"] = runs.apply(setting_of, axis=1)
    fixed = runs[runs["setting"] == "kd, fixed"].set_index("seed")["test_acc"]
    order = ["scratch", "kd, fixed", *sorted(s for s in set(runs["setting"]) if s.startswith("kd, cached")),
             "kd, online"]
    rows, pvalues = [], []
    for setting in [s for s in order if s in set(runs["setting"])]:
        group = runs[runs["setting"] == setting].sort_values("seed")
        scores = list(group["test_acc"])
        paired = group.set_index("seed")["test_acc"].align(fixed, join="inner")
        diff, p = "", None
        if setting.startswith("kd") and setting != "kd, fixed" and len(paired[0]) >= 2:
            deltas = paired[0] - paired[1]
            p = float(ttest_rel(paired[0], paired[1]).pvalue)
            diff = f"{100 * deltas.mean():+.1f} ± {100 * deltas.std(ddof=1):.1f}"
            pvalues.append(p)
        mode_cached = setting.startswith("kd, cached")
        views_s = group["teacher_view_s"].iloc[0] if mode_cached else group["teacher_view_s"].sum()
        images = group["teacher_view_images"].iloc[0] if mode_cached else group["teacher_view_images"].sum()
        train_s = float((group["epochs"] * group["epoch_seconds"]).sum())
        total = train_s + (float(views_s) if mode_cached else 0.0)
        rows.append([setting, len(group), interval(scores), diff, p, int(images), float(views_s), train_s, total])
    adjusted = iter(holm(pvalues))
    print("| setting | seeds | test % (mean ± std [95% CI]) | vs kd fixed (points, paired) | p (Holm) | "
          "teacher images on views | teacher s on views | training s (all seeds) | total s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting, n, acc, diff, p, images, views_s, train_s, total in rows:
        shown = f"{p:.3f} ({next(adjusted):.3f})" if p is not None else ""
        print(f"| {setting} | {n} | {acc} | {diff} | {shown} | {images} | {views_s:.0f} | {train_s:.0f} "
              f"| {total:.0f} |")


if __name__ == "__main__":
    main()
