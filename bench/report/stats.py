"""Gain of each method setting over the same student trained from scratch in the same setting (shared hparams,
data config) and seed, with a paired t-test over seeds and a Holm correction across one report's verdicts."""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.core.names import BASELINE_METHOD, REFERENCE_METHODS, TEACHER_VIEW_FIELDS
from bench.report.tables import REPLICATE_KEYS, SETTING_KEYS, draw_seeds, with_score, with_setting

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
    """Mean score per (setting, seed, data draw): a duplicated run is averaged, never counted twice."""
    keys = [*SETTING_KEYS, *REPLICATE_KEYS]
    done = done.assign(**{c: pd.to_numeric(done[c], errors="coerce") if c in done else float("nan")
                          for c in COMPUTE_COLUMNS})
    scores = done.groupby(keys, as_index=False).agg(score=("score", "mean"), setting=("setting", "first"),
                                                  hparams=("hparams", "first"), data_config=("data_config", "first"),
                                                  train_steps=("train_steps", "mean"),
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
    """Each method run next to the scratch run of the same setting (shared hparams, data), seed and data draw (a
    method's run at split_seed s pairs with scratch at split_seed s)."""
    per_seed = _per_seed(done)
    per_seed["pair_data_key"] = [_pair_data_key(json.loads(k)) for k in per_seed["data_key"]]
    baseline = per_seed[per_seed["method"] == BASELINE_METHOD]
    others = per_seed[per_seed["method"] != BASELINE_METHOD]
    paired = others.merge(baseline, on=[*PAIR_KEYS, "pair_data_key", *REPLICATE_KEYS], suffixes=("", "_baseline"))
    keep = [_same_shared_hparams(m, b) for m, b in zip(paired["hparams"], paired["hparams_baseline"], strict=True)]
    return paired[keep] if len(paired) else paired


def data_seed_roles(configs: list[object]) -> tuple[str, str]:
    """(varied, fixed): which data seeds differ among these runs and which are the same ('split_seed, labeled_seed'
    style; labeled_seed only where runs have a labelled subset)."""
    seeds = [draw_seeds(config) for config in configs]
    splits, subsets = {split for split, _ in seeds}, {labeled for _, labeled in seeds}
    present = [("split_seed", splits), *((("labeled_seed", subsets),) if subsets != {None} else ())]
    varied = [name for name, values in present if len(values) > 1]
    return ", ".join(varied), ", ".join(name for name, _ in present if name not in varied)


def replicates(group: pd.DataFrame) -> pd.DataFrame:
    """The paired units a gain is tested over: each seed's pair with one data draw; with several draws, each
    draw's pair of means over its seeds (pairs sharing a split are not independent, so n counts draws)."""
    if group["data_draw"].nunique() <= 1:
        return group.sort_values("seed")
    return group.groupby("data_draw", as_index=False, sort=True)[["score", "score_baseline"]].mean()


def _gain_row(key: tuple, group: pd.DataFrame, metric: str, baselines: int) -> dict:
    units = replicates(group)
    method_scores, base_scores = list(units["score"]), list(units["score_baseline"])
    diffs = units["score"] - units["score_baseline"]
    t, p = paired_test(method_scores, base_scores)
    setting = str(group["setting"].iloc[0])
    if baselines > 1:  # several scratch settings share this one's hparams: say which one it is paired with
        setting = f"{setting} vs scratch {group['setting_baseline'].iloc[0] or 'default'}".strip()
    return {
        **dict(zip(GAIN_KEYS, key[: len(GAIN_KEYS)], strict=True)), "setting": setting, "metric": metric,
        "n": len(units), "draws": int(group["data_draw"].nunique()), "seeds": int(group["seed"].nunique()),
        **dict(zip(("varied", "fixed"), data_seed_roles(list(group["data_config"])), strict=True)),
        "method_mean": sum(method_scores) / len(units), "baseline_mean": sum(base_scores) / len(units),
        "gain": diffs.mean(), "gain_std": diffs.std(ddof=1) if len(units) > 1 else float("nan"), "t": t, "p": p,
        "constant": constant_difference(method_scores, base_scores),
        "steps": group["train_steps"].mean(), "baseline_steps": group["train_steps_baseline"].mean(),
        "compute": compute_note(group["train_steps"].mean(), group["train_steps_baseline"].mean()),
    }


def baseline_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method setting, paired scratch setting): paired seeds n, gain mean/std, t, p."""
    done = with_score(runs[(runs["status"] == "done") & ~runs["method"].isin(REFERENCE_METHODS)])
    done = done[done["score"].notna()]
    columns = [*GAIN_KEYS, "setting", "metric", "n", "draws", "seeds", "varied", "fixed", "method_mean",
               "baseline_mean", "gain", "gain_std", "t", "p", "constant", "steps", "baseline_steps", "compute",
               "p_holm"]
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
STUDENT_SEED = "the student seed (its initialisation, data order and augmentation)"
DATA_SEED_EFFECTS = {  # what each data seed varies, said in the caption when a row varies it
    "split_seed": "split_seed (the val split, the train rows, the test subset under test_limit, and the teacher "
                  "reference fit on those rows: its probe or fine-tune)",
    "labeled_seed": "labeled_seed (which train rows keep their label: scratch's training set and a fine-tuned "
                    "teacher's)",
}


def _names(gains: pd.DataFrame, column: str) -> set[str]:
    """The data-seed names listed in a gains column (comma-separated per row)."""
    return {name for text in gains.get(column, pd.Series(dtype=str)) if isinstance(text, str)
            for name in text.split(", ") if name}


def variance_sources(gains: pd.DataFrame) -> str:
    """The caption's sentence saying which sources of variance the replicates cover, from the rows themselves."""
    varied = sorted(_names(gains, "varied"), key=list(DATA_SEED_EFFECTS).index)
    if not varied:
        return (f"Replicates vary {STUDENT_SEED} only; the teacher's weights and reference, the labelled subset and "
                "the val split are fixed within a setting (a grid's `seed_axes` varies split_seed / labeled_seed).")
    mixed = (gains["varied"].fillna("") == "").any()
    covered = " and ".join(DATA_SEED_EFFECTS[name] for name in varied)
    fixed = [name for name in DATA_SEED_EFFECTS if name in _names(gains, "fixed") and name not in varied]
    return (f"Replicates vary {STUDENT_SEED} and {covered}" + (" in the rows whose n counts data draws" if mixed
                                                               else "")
            + "; there the test is over data draws (each the mean of its paired seeds, so pairs sharing a split "
              "are not counted as independent) and a method run pairs with scratch at the same seed and data seeds"
            + (f"; {', '.join(fixed)} is fixed" if fixed else "")
            + ". The teacher's pretrained weights are fixed.")


def gain_caption(gains: pd.DataFrame) -> str:
    """The sentence under a gain table: pairing, test, Holm family size and the sources of variance covered."""
    family = int(pd.to_numeric(gains.get("p"), errors="coerce").notna().sum()) if len(gains) else 0
    return ("Paired over seeds (same student, teacher, epochs, setting, seed and data seeds; scratch shares the "
            "method's learning rate, batch size and data); t and p from a paired t-test (scipy.stats.ttest_rel), "
            "n/a with fewer than 2 paired seeds or when every seed gives the same difference (shown exactly instead); "
            f"verdict at Holm-adjusted p < {ALPHA} across the {family} tested comparisons of this report. "
            "compute: whether method and scratch took the same optimizer steps (`data.budget: steps` matches them; "
            "under `labeled_limit` with `budget: epochs` scratch passes over its labelled rows only). "
            + variance_sources(gains))


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
    draws = int(row.get("draws", 1) or 1)
    n = f"{row['n']} draws x {row.get('seeds')} seeds" if draws > 1 else str(row["n"])
    return [str(row["student"]), str(row["teacher"]), str(row["epochs"]), str(row["method"]), *setting, n,
            f"{row['method_mean'] * 100:.1f}", f"{row['baseline_mean'] * 100:.1f}",
            f"{row['gain'] * 100:+.1f}{spread}", t, format_p(row["p"]), format_p(p_holm),
            verdict(row["gain"], p_holm, constant=constant), str(row.get("compute", "unknown"))]
