"""Gain of each method setting over the same student trained from scratch in the same setting (shared hparams,
data config) and seed, with a paired t-test over seeds and a Holm correction across one report's verdicts."""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.core.names import BASELINE_METHOD, REFERENCE_METHODS, TEACHER_VIEW_FIELDS
from bench.report.tables import SETTING_KEYS, with_score, with_setting

PAIR_KEYS = ["dataset", "teacher", "student", "epochs"]
GAIN_KEYS = [*PAIR_KEYS, "method"]
COMPUTE_COLUMNS = ("train_steps", "images_seen")  # issue 29: what each run trained for
MIN_PAIRED_SEEDS = 2
CONSTANT_SPREAD = 1e-9  # paired differences closer than this are one value (k/N scores differ by float rounding only)
ALPHA = 0.05


def constant_difference(method_scores: list[float], baseline_scores: list[float]) -> bool:
    """Whether every paired difference is the same (no variance): t is undefined there, never +-inf."""
    diffs = [m - b for m, b in zip(method_scores, baseline_scores, strict=True)]
    return len(diffs) >= MIN_PAIRED_SEEDS and max(diffs) - min(diffs) <= CONSTANT_SPREAD


def paired_test(method_scores: list[float], baseline_scores: list[float]) -> tuple[float, float]:
    """(t, p) of scipy's paired t-test; (nan, nan) with fewer than two pairs or no variance."""
    if len(method_scores) < MIN_PAIRED_SEEDS or constant_difference(method_scores, baseline_scores):
        return float("nan"), float("nan")
    import warnings

    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant differences: scipy may warn
        result = ttest_rel(method_scores, baseline_scores)
    t, p = float(result.statistic), float(result.pvalue)
    return (t, p) if math.isfinite(t) else (float("nan"), float("nan"))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, family = the finite p-values given); nan stays nan."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted


def _per_seed(done: pd.DataFrame) -> pd.DataFrame:
    """Mean score per (setting, seed): a duplicated seed is averaged, never counted twice."""
    keys = [*SETTING_KEYS, "seed"]
    done = done.assign(**{c: pd.to_numeric(done[c], errors="coerce") if c in done else float("nan")
                          for c in COMPUTE_COLUMNS})
    scores = done.groupby(keys, as_index=False).agg(score=("score", "mean"), setting=("setting", "first"),
                                                  hparams=("hparams", "first"), train_steps=("train_steps", "mean"),
                                                  images_seen=("images_seen", "mean"))
    return scores


def compute_note(method_steps: float, baseline_steps: float) -> str:
    """'matched (1875 steps)', 'NOT matched: 1875 vs 470 steps' or 'unknown' (rows stored before issue 29)."""
    if pd.isna(method_steps) or pd.isna(baseline_steps):
        return "unknown"
    if round(method_steps) == round(baseline_steps):
        return f"matched ({method_steps:.0f} steps)"
    return f"NOT matched: {method_steps:.0f} vs {baseline_steps:.0f} steps"


def _same_shared_hparams(method: dict, baseline: dict) -> bool:
    """The baseline's setting: every hyperparameter both runs have is equal (lr, batch size, ...)."""
    method, baseline = method or {}, baseline or {}
    return all(method[k] == baseline[k] for k in set(method) & set(baseline))


def _pair_data_key(data_config: object) -> str:
    """The data config a pair must share: all of it but `budget`, so a method meets both its epoch- and its
    steps-budget scratch (the compute column says which pair is matched), and but the teacher views (a scratch
    run reads no teacher: every view setting's method pairs with the scratch of the same augmentation)."""
    skip = {"budget", *TEACHER_VIEW_FIELDS}
    config = {k: v for k, v in (data_config if isinstance(data_config, dict) else {}).items() if k not in skip}
    return json.dumps(config, sort_keys=True, default=str)


def _paired(done: pd.DataFrame) -> pd.DataFrame:
    """Each method run next to the scratch run of the same setting (shared hparams, data) and seed."""
    per_seed = _per_seed(done)
    per_seed["pair_data_key"] = [_pair_data_key(json.loads(k)) for k in per_seed["data_key"]]
    baseline = per_seed[per_seed["method"] == BASELINE_METHOD]
    others = per_seed[per_seed["method"] != BASELINE_METHOD]
    paired = others.merge(baseline, on=[*PAIR_KEYS, "pair_data_key", "seed"], suffixes=("", "_baseline"))
    keep = [_same_shared_hparams(m, b) for m, b in zip(paired["hparams"], paired["hparams_baseline"], strict=True)]
    return paired[keep] if len(paired) else paired


def _gain_row(key: tuple, group: pd.DataFrame, metric: str, baselines: int) -> dict:
    group = group.sort_values("seed")
    method_scores, base_scores = list(group["score"]), list(group["score_baseline"])
    diffs = group["score"] - group["score_baseline"]
    t, p = paired_test(method_scores, base_scores)
    setting = str(group["setting"].iloc[0])
    if baselines > 1:  # several scratch settings share this one's hparams: say which one it is paired with
        setting = f"{setting} vs scratch {group['setting_baseline'].iloc[0] or 'default'}".strip()
    return {
        **dict(zip(GAIN_KEYS, key[: len(GAIN_KEYS)], strict=True)), "setting": setting, "metric": metric,
        "n": len(group), "method_mean": sum(method_scores) / len(group),
        "baseline_mean": sum(base_scores) / len(group), "gain": diffs.mean(),
        "gain_std": diffs.std(ddof=1) if len(group) > 1 else float("nan"), "t": t, "p": p,
        "constant": constant_difference(method_scores, base_scores),
        "steps": group["train_steps"].mean(), "baseline_steps": group["train_steps_baseline"].mean(),
        "compute": compute_note(group["train_steps"].mean(), group["train_steps_baseline"].mean()),
    }


def baseline_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method setting, paired scratch setting): paired seeds n, gain mean/std, t, p."""
    done = with_score(runs[(runs["status"] == "done") & ~runs["method"].isin(REFERENCE_METHODS)])
    done = done[done["score"].notna()]
    columns = [*GAIN_KEYS, "setting", "metric", "n", "method_mean", "baseline_mean", "gain", "gain_std", "t", "p",
               "constant", "steps", "baseline_steps", "compute", "p_holm"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    done = with_setting(done)
    metric = done.groupby("dataset")["metric"].first()
    paired = _paired(done)
    method_setting = [*GAIN_KEYS, "study", "hparams_key", "data_key"]
    baseline_setting = ["study_baseline", "hparams_key_baseline", "data_key_baseline"]
    baselines = paired.groupby(method_setting)[baseline_setting].nunique().max(axis=1) \
        if len(paired) else pd.Series(dtype=int)
    rows = []
    for key, group in paired.groupby([*method_setting, *baseline_setting], sort=True):
        rows.append(_gain_row(key, group, metric[key[0]], int(baselines[key[: len(method_setting)]])))
    gains = pd.DataFrame(rows, columns=columns)
    gains["p_holm"] = holm(list(gains["p"]))  # the family: every verdict of this report
    return gains


def format_p(p: float) -> str:
    """'p=0.031', 'p<0.001' or 'n/a' (fewer than two paired seeds, or no variance)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(gain: float, p: float, alpha: float = ALPHA, constant: bool = False) -> str:
    """'helps', 'hurts', 'no significant difference' (at alpha) or 'untested' without a p-value (the exact
    difference when every seed gives the same one)."""
    if constant:
        return f"untested: every seed differs by exactly {gain * 100:+.2f} points (no variance)"
    if p is None or math.isnan(p):
        return "untested"
    if p >= alpha:
        return "no significant difference"
    return "helps" if gain > 0 else "hurts"


GAIN_HEADER = ["student", "teacher", "epochs", "method", "paired seeds", "method %", "scratch %",
               "gain (points)", "t", "p", "p (Holm)", "verdict", "compute"]
VARIANCE_SOURCES = ("Seeds vary the student only (its initialisation, data order and augmentation); the teacher, its "
                    "reference, the labelled subset and the val split are fixed within a setting "
                    "(`data.split_seed` is part of the setting: a grid listing several shows each as its own row).")


def gain_caption(gains: pd.DataFrame) -> str:
    """The sentence under a gain table: pairing, test, Holm family size and the sources of variance covered."""
    family = int(pd.to_numeric(gains.get("p"), errors="coerce").notna().sum()) if len(gains) else 0
    return ("Paired over seeds (same student, teacher, epochs, setting and seed; scratch shares the method's "
            "learning rate, batch size and data); t and p from a paired t-test (scipy.stats.ttest_rel), n/a with "
            "fewer than 2 paired seeds or when every seed gives the same difference (shown exactly instead); "
            f"verdict at Holm-adjusted p < {ALPHA} across the {family} tested comparisons of this report. "
            "compute: whether method and scratch took the same optimizer steps (`data.budget: steps` matches them; "
            "under `labeled_limit` with `budget: epochs` scratch passes over its labelled rows only). "
            + VARIANCE_SOURCES)


def has_settings(gains: pd.DataFrame) -> bool:
    """Whether any gain row names a setting: then its table has a 'setting' column after 'method'."""
    return bool(len(gains)) and bool(gains["setting"].astype(bool).any())


def gain_header(with_setting: bool) -> list[str]:
    """GAIN_HEADER, with 'setting' after 'method' when settings differ."""
    return [*GAIN_HEADER[:4], "setting", *GAIN_HEADER[4:]] if with_setting else list(GAIN_HEADER)


def gain_cells(row: pd.Series, with_setting: bool = False) -> list[str]:
    """One baseline-comparison row as display strings (scores in percent, gain in points)."""
    spread = f" ± {row['gain_std'] * 100:.1f}" if pd.notna(row["gain_std"]) else ""
    t = "n/a" if pd.isna(row["t"]) else f"{row['t']:.2f}"
    setting = [str(row["setting"])] if with_setting else []
    p_holm = row.get("p_holm", row["p"])
    constant = bool(row.get("constant", False))
    return [str(row["student"]), str(row["teacher"]), str(row["epochs"]), str(row["method"]), *setting, str(row["n"]),
            f"{row['method_mean'] * 100:.1f}", f"{row['baseline_mean'] * 100:.1f}",
            f"{row['gain'] * 100:+.1f}{spread}", t, format_p(row["p"]), format_p(p_holm),
            verdict(row["gain"], p_holm, constant=constant), str(row.get("compute", "unknown"))]
