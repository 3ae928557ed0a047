"""Gain of each method over the same student trained from scratch, with a paired t-test over seeds."""

from __future__ import annotations

import math

import pandas as pd

from bench.report.load import BASELINE_METHOD, PROBE_METHOD
from bench.report.tables import with_score

PAIR_KEYS = ["dataset", "teacher", "student", "epochs"]
MIN_PAIRED_SEEDS = 2


def paired_test(method_scores: list[float], baseline_scores: list[float]) -> tuple[float, float]:
    """(t, p) of scipy's paired t-test; (nan, nan) with fewer than two pairs or no variance."""
    if len(method_scores) < MIN_PAIRED_SEEDS:
        return float("nan"), float("nan")
    import warnings

    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical differences: scipy returns nan
        result = ttest_rel(method_scores, baseline_scores)
    return float(result.statistic), float(result.pvalue)


def _per_seed(done: pd.DataFrame) -> pd.DataFrame:
    """Mean score per (pair keys, method, seed): duplicates (several hparams) are averaged."""
    return done.groupby([*PAIR_KEYS, "method", "seed"], as_index=False)["score"].mean()


def baseline_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, teacher, student, epochs, method): paired seeds n, gain mean/std, t, p."""
    done = with_score(runs[(runs["status"] == "done") & (runs["method"] != PROBE_METHOD)])
    done = done[done["score"].notna()]
    columns = [*PAIR_KEYS, "metric", "method", "n", "method_mean", "baseline_mean", "gain", "gain_std", "t", "p"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    per_seed = _per_seed(done)
    metric = done.groupby("dataset")["metric"].first()
    baseline = per_seed[per_seed["method"] == BASELINE_METHOD]
    others = per_seed[per_seed["method"] != BASELINE_METHOD]
    paired = others.merge(baseline, on=[*PAIR_KEYS, "seed"], suffixes=("", "_baseline"))
    rows = []
    for key, group in paired.groupby([*PAIR_KEYS, "method"], sort=True):
        group = group.sort_values("seed")
        method_scores, base_scores = list(group["score"]), list(group["score_baseline"])
        diffs = group["score"] - group["score_baseline"]
        t, p = paired_test(method_scores, base_scores)
        rows.append({
            **dict(zip([*PAIR_KEYS, "method"], key, strict=True)), "metric": metric[key[0]],
            "n": len(group), "method_mean": sum(method_scores) / len(group),
            "baseline_mean": sum(base_scores) / len(group), "gain": diffs.mean(),
            "gain_std": diffs.std(ddof=1) if len(group) > 1 else float("nan"), "t": t, "p": p,
        })
    return pd.DataFrame(rows, columns=columns)


def format_p(p: float) -> str:
    """'p=0.031', 'p<0.001' or 'n/a' (fewer than two paired seeds, or no variance)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(gain: float, p: float, alpha: float = 0.05) -> str:
    """'helps', 'hurts', 'no significant difference' (at alpha) or 'untested' without a p-value."""
    if p is None or math.isnan(p):
        return "untested"
    if p >= alpha:
        return "no significant difference"
    return "helps" if gain > 0 else "hurts"


GAIN_HEADER = ["student", "teacher", "epochs", "method", "paired seeds", "method %", "scratch %",
               "gain (points)", "t", "p", "verdict"]


def gain_cells(row: pd.Series) -> list[str]:
    """One baseline-comparison row as display strings (scores in percent, gain in points)."""
    spread = f" ± {row['gain_std'] * 100:.1f}" if pd.notna(row["gain_std"]) else ""
    t = "n/a" if pd.isna(row["t"]) else f"{row['t']:.2f}"
    return [str(row["student"]), str(row["teacher"]), str(row["epochs"]), str(row["method"]), str(row["n"]),
            f"{row['method_mean'] * 100:.1f}", f"{row['baseline_mean'] * 100:.1f}",
            f"{row['gain'] * 100:+.1f}{spread}", t, format_p(row["p"]), verdict(row["gain"], row["p"])]
