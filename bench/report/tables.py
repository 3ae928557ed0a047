"""Summaries over seeds and the per-dataset matrix tables (student x teacher per epoch budget)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.core.names import DATA_SEED_FIELDS, REFERENCE_METHODS, TEACHER_VIEW_FIELDS
from bench.core.spec import differing_keys, hparam_label

GROUP_KEYS = ["dataset", "teacher", "student", "method", "epochs"]
SETTING_KEYS = [*GROUP_KEYS, "study", "hparams_key", "data_key"]  # one full setting: only seeds are averaged
REPLICATE_KEYS = ["seed", "data_draw"]  # what a setting averages over: the student seed and the data seeds
ROW_BLOCK = ["dataset", "student", "method", "epochs"]  # a matrix row's labels say what differs in this block
CONFIDENCE_QUANTILE = 0.975  # two-sided 95% interval
CI_LEGEND = "95% CI, t over seeds"
RECALL_COLUMN = "mean_recall"


def dataset_metric(runs: pd.DataFrame, dataset: str) -> str:
    """`mean_recall` where the dataset has it (image-text retrieval), else `test_acc`."""
    if RECALL_COLUMN in runs:
        values = runs.loc[runs["dataset"] == dataset, RECALL_COLUMN]
        if values.notna().any():
            return RECALL_COLUMN
    return "test_acc"


def metric_label(metric: str) -> str:
    """Human name of a score column."""
    return "mean retrieval recall %" if metric == RECALL_COLUMN else "test accuracy %"


def with_score(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with `score` (the dataset's metric, as a fraction) and `metric` columns."""
    frame = runs.copy()
    frame["metric"] = frame["dataset"].map({d: dataset_metric(runs, d) for d in frame["dataset"].unique()})
    frame["score"] = pd.to_numeric(frame["test_acc"], errors="coerce")
    if RECALL_COLUMN in frame:
        recall = pd.to_numeric(frame[RECALL_COLUMN], errors="coerce")
        if recall.max(skipna=True) > 1.0:  # stored in percent: bring it to a fraction like test_acc
            recall = recall / 100.0
        frame["score"] = frame["score"].where(frame["metric"] != RECALL_COLUMN, recall)
    return frame


def _problems(statuses: pd.Series) -> str:
    counts = statuses[statuses != "done"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _as_key(value: object) -> str:
    return json.dumps(value if isinstance(value, dict) else {}, sort_keys=True, default=str)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def without_data_seeds(config: object) -> dict:
    """A data config less its seeds (split_seed, labeled_seed): what a setting fixes; the seeds are replicates."""
    return {k: v for k, v in _dict(config).items() if k not in DATA_SEED_FIELDS}


def draw_seeds(config: object) -> tuple[int, int | None]:
    """(split seed, labelled-subset seed) of a run: its val split and train rows, and under labeled_limit the rows
    that keep their label (labeled_seed, or split_seed when unset); None without labeled_limit."""
    config = _dict(config)
    split = int(config.get("split_seed", 0))
    if config.get("labeled_limit") is None:
        return split, None
    labeled = config.get("labeled_seed")
    return split, split if labeled is None else int(labeled)


def data_draw(config: object) -> str:
    """'split 1, labels 3': the data seeds of a run as one key."""
    split, labeled = draw_seeds(config)
    return f"split {split}" if labeled is None else f"split {split}, labels {labeled}"


def _sort_value(value: object) -> tuple:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _with_defaults(configs: dict[object, dict]) -> dict[object, dict]:
    """Data configs with a later-added field's default filled in where another row of the group sets that field
    (a spec leaves such a field out at its default): the fixed-views row then reads teacher_views=fixed."""
    from bench.data.splits import UNKEYED_DEFAULTS

    named = {key for config in configs.values() for key in config if UNKEYED_DEFAULTS.get(key) is not None}
    filled = {index: {**{key: UNKEYED_DEFAULTS[key] for key in named}, **config} for index, config in configs.items()}
    for config in filled.values():  # K, view seed and top-k mean something for cached views only
        if config.get("teacher_views", "cached") != "cached":
            for key in TEACHER_VIEW_FIELDS[1:]:
                config.pop(key, None)
    return filled


def with_setting(runs: pd.DataFrame, block: list[str] = ROW_BLOCK, name_study: bool = True,
                 label_data_seeds: bool = False) -> pd.DataFrame:
    """A copy with hparams_key, data_key, study and `setting` (what differs within each `block` group); the data
    seeds are replicates, in neither the key nor the label, unless `label_data_seeds` (a list of single runs)."""
    setting_data = _dict if label_data_seeds else without_data_seeds
    frame = runs.copy()
    for column, empty in (("hparams", {}), ("data_config", {}), ("study", "")):
        if column not in frame:  # hand-made frames (tests, old exports) may lack them: one default setting
            frame[column] = [empty] * len(frame)
    frame["hparams_key"] = [_as_key(v) for v in frame["hparams"]]
    frame["data_key"] = [_as_key(without_data_seeds(v)) for v in frame["data_config"]]
    frame["data_draw"] = [data_draw(v) for v in frame["data_config"]]
    frame["study"] = frame["study"].fillna("").astype(str)
    frame["setting"] = ""
    frame["setting_order"] = [()] * len(frame)
    for _, group in frame.groupby(block, sort=False):
        hkeys = differing_keys([h for h in group["hparams"] if isinstance(h, dict)])
        data = _with_defaults({index: setting_data(value) for index, value in group["data_config"].items()})
        dkeys = differing_keys(list(data.values()))
        labels = {index: ", ".join(p for p in (hparam_label(_dict(row["hparams"]), hkeys),
                                               hparam_label(data[index], dkeys)) if p)
                  for index, row in group.iterrows()}
        identities = group[["study", "hparams_key", "data_key"]].drop_duplicates()
        name = name_study and len(set(labels.values())) < len(identities)  # same hparams in two studies
        for index, row in group.iterrows():
            study = f"study={row['study']}" if name else ""
            frame.at[index, "setting"] = ", ".join(p for p in (study, labels[index]) if p)
            frame.at[index, "setting_order"] = (row["study"] if name else "",
                                                *(_sort_value(_dict(row["hparams"]).get(k, "")) for k in hkeys),
                                                *(_sort_value(data[index].get(k, "")) for k in dkeys))
    return frame


def mean_ci(scores: list[float]) -> tuple[float, float, float, float]:
    """(mean, std, CI low, CI high) over seeds: 95% t interval of the mean; nan std/CI with one seed."""
    n = len(scores)
    if n == 0:
        return (float("nan"),) * 4
    mean = sum(scores) / n
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan")
    from scipy.stats import t

    std = float(pd.Series(scores).std(ddof=1))
    half = float(t.ppf(CONFIDENCE_QUANTILE, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def replicate_scores(done: pd.DataFrame) -> tuple[list[float], int]:
    """The scores a setting's mean and CI are over, and its number of data draws. One data draw (split and labelled
    subset fixed): one score per distinct seed. Several: one per draw, the mean over its seeds, so n counts the
    draws (runs sharing a split are not independent of each other). A duplicated run is averaged, never counted
    twice."""
    scored = done.dropna(subset=["score"])
    if "data_draw" not in scored:
        scored = scored.assign(data_draw="")
    per_run = scored.groupby(REPLICATE_KEYS)["score"].mean()
    draws = per_run.groupby(level="data_draw").mean()
    return (list(draws) if len(draws) > 1 else list(per_run)), len(draws)


COST_COLUMNS = ("latency_ms", "throughput_ips", "macs", "teacher_latency_ms", "teacher_throughput_ips", "teacher_macs",
                "speedup", "backbone_latency_ms")  # issue 14: the deployable model's inference cost and its teacher's
COST_NOISE_COLUMNS = ("latency_spread", "cost_load", "teacher_latency_spread", "teacher_cost_load")  # issue 28: worst


def finite_max(rows: pd.DataFrame, column: str) -> float:
    """Largest finite value of a column (NaN when none, or when an older database lacks the column): the noisiest
    seed's timing speaks for the setting."""
    if column not in rows:
        return float("nan")
    values = pd.to_numeric(rows[column], errors="coerce")
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) else float("nan")


def finite_mean(rows: pd.DataFrame, column: str) -> float:
    """Mean of a column's finite values (NaN when it has none, or when an older database lacks the column)."""
    if column not in rows:
        return float("nan")
    values = pd.to_numeric(rows[column], errors="coerce")
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting (group keys + study, hparams, data config): score over distinct done seeds with a 95% CI."""
    scored = with_setting(with_score(runs[~runs["method"].isin(REFERENCE_METHODS)]))
    rows = []
    for key, group in scored.groupby(SETTING_KEYS, sort=True):
        done = group[group["status"] == "done"]
        kinds = [k for k in group["student_kind"].dropna().unique() if k]
        seeds, draws = replicate_scores(done)
        mean, std, low, high = mean_ci(seeds)
        rows.append({
            **dict(zip(SETTING_KEYS, key, strict=True)),
            "setting": group["setting"].iloc[0],
            "setting_order": group["setting_order"].iloc[0],
            "hparams": group["hparams"].iloc[0],
            "data_config": group["data_config"].iloc[0],
            "student_kind": kinds[0] if kinds else "",
            "metric": group["metric"].iloc[0],
            "score_mean": mean,
            "score_std": std,
            "ci_low": low,
            "ci_high": high,
            "seeds": len(seeds),
            "data_draws": draws,
            "student_seeds": int(done["seed"].nunique()),
            "pct_of_teacher": done["pct_of_teacher"].mean(),
            "params": done["params"].mean(),
            "size_mb": done["size_mb"].mean(),
            "inference_size_mb": done["inference_size_mb"].mean(),
            "epoch_seconds": done["epoch_seconds"].mean(),
            **{name: finite_mean(done, name) for name in COST_COLUMNS},
            "train_steps": finite_mean(done, "train_steps"), "images_seen": finite_mean(done, "images_seen"),
            **{name: finite_max(done, name) for name in COST_NOISE_COLUMNS},
            "epoch_seconds_std": done["epoch_seconds"].std(ddof=1) if len(done) > 1 else float("nan"),
            "runs": len(group),
            "problems": _problems(group["status"]),
        })
    return pd.DataFrame(rows)


def teacher_references(runs: pd.DataFrame) -> pd.DataFrame:
    """The teacher-reference score (probe, zero-shot or fine-tuned) per (dataset, teacher): the 100% of '% of
    teacher'."""
    probes = with_score(runs[runs["method"].isin(REFERENCE_METHODS) & (runs["status"] == "done")])
    if "teacher_reference" not in probes:
        probes = probes.assign(teacher_reference="linear-probe")
    return probes.groupby(["dataset", "teacher"], as_index=False).agg(
        score=("score", "mean"), reference=("teacher_reference", "first"))


@dataclass(frozen=True)
class Cell:
    """One matrix cell (one setting): score over seeds, its 95% CI, % of teacher, runs that did not finish."""

    mean: float
    std: float
    seeds: int
    pct: float
    problems: str
    best: bool = False
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    steps: float = float("nan")  # issue 29: mean optimizer steps and training images of its runs
    images: float = float("nan")
    draws: int = 1  # data draws (split_seed / labeled_seed) averaged over: n counts them when more than one
    student_seeds: int = 0

    def text(self, plus_minus: str = "±") -> str:
        """'93.1 ± 0.4' (percent), 'n/a' with no finished seed."""
        if self.seeds == 0:
            return "n/a"
        spread = f" {plus_minus} {self.std * 100:.1f}" if self.seeds > 1 else ""
        return f"{self.mean * 100:.1f}{spread}"

    def ci_text(self) -> str:
        """'[92.2, 94.0]' (95% CI of the mean, percent); '' with fewer than two seeds: never a fake zero width."""
        if self.seeds < 2 or pd.isna(self.ci_low):
            return ""
        return f"[{self.ci_low * 100:.1f}, {self.ci_high * 100:.1f}]"

    def detail(self) -> str:
        """'n=2, 98% of T, 1 failed': seeds, % of teacher and problems."""
        parts = [f"n={self.seeds}" + (f" data draws x {self.student_seeds} seeds" if self.draws > 1 else "")]
        if pd.notna(self.steps):
            parts.append(f"{self.steps:.0f} steps, {_count(self.images)} img")
        if pd.notna(self.pct):
            parts.append(f"{self.pct:.0f}% of T")
        if self.problems:
            parts.append(self.problems)
        return ", ".join(parts)


def _count(value: float) -> str:
    """'120k', '1.9M' or '950': a count of images, short."""
    if pd.isna(value):
        return "?"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


@dataclass
class Matrix:
    """Rows (student, kind, size MB, inference MB, method, setting) x teachers, for one dataset and epoch budget."""

    dataset: str
    epochs: int
    metric: str
    teachers: list[str]
    rows: list[tuple[str, str, str, str, str, str]]
    cells: dict[tuple[int, str], Cell] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    reference_kinds: dict[str, str] = field(default_factory=dict)  # teacher -> "linear-probe" or zero-shot line
    row_ids: list[tuple] = field(default_factory=list)  # each row's ROW_IDENTITY values
    notes: list[str] = field(default_factory=list)  # issue 29: warnings, numbered from 1 in this order
    cell_marks: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # cell -> its notes' numbers
    teacher_marks: dict[str, list[int]] = field(default_factory=dict)  # teacher column -> its notes' numbers

    def warn(self, text: str, cell: tuple[int, str] | None = None, teacher: str | None = None) -> None:
        """Attach a warning note (numbered once per text) to a cell or a whole teacher column."""
        if text not in self.notes:
            self.notes.append(text)
        number = self.notes.index(text) + 1
        marks = self.cell_marks.setdefault(cell, []) if cell else self.teacher_marks.setdefault(str(teacher), [])
        if number not in marks:
            marks.append(number)

    @property
    def has_settings(self) -> bool:
        """Whether any row names a setting (hparams, data or study differ): then the table has that column."""
        return any(row[5] for row in self.rows)

    def row_key(self, index: int) -> list[str]:
        """The row's leading columns (without the setting column when no row has one)."""
        return list(self.rows[index] if self.has_settings else self.rows[index][:5])


def _size_label(sizes: pd.Series) -> str:
    sizes = sizes.dropna()
    if sizes.empty:
        return "?"
    low, high = sizes.min(), sizes.max()
    return f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.3f}–{high:.3f}"


ROW_IDENTITY = ["student", "method", "study", "hparams_key", "data_key"]  # a row: one setting, across teachers


def _matrix(dataset: str, epochs: int, rows: pd.DataFrame, references: pd.DataFrame) -> Matrix:
    teachers = sorted(rows["teacher"].unique())
    groups = sorted(rows.groupby(ROW_IDENTITY, sort=False),
                    key=lambda item: (item[0][0], item[0][1], item[1]["setting_order"].iloc[0], item[0][2:]))
    keys, identities = [], []
    for identity, group in groups:
        kind = next((k for k in group["student_kind"] if k), "")
        keys.append((identity[0], kind or "?", _size_label(group["size_mb"]),
                     _size_label(group["inference_size_mb"]), identity[1], str(group["setting"].iloc[0])))
        identities.append(identity)
    refs = references[references["dataset"] == dataset]
    matrix = Matrix(dataset, epochs, rows["metric"].iloc[0], teachers, keys,
                    references=dict(zip(refs["teacher"], refs["score"], strict=True)),
                    reference_kinds=dict(zip(refs["teacher"], refs["reference"].fillna("linear-probe"), strict=True)))
    matrix.row_ids = [tuple(identity) for identity in identities]
    indexed = rows.set_index(["teacher", *ROW_IDENTITY])
    for teacher in teachers:
        best = rows.loc[rows["teacher"] == teacher, "score_mean"].max()
        for index, identity in enumerate(identities):
            if (teacher, *identity) not in indexed.index:
                continue
            r = indexed.loc[(teacher, *identity)]
            r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
            is_best = bool(r.seeds > 0 and pd.notna(best) and r.score_mean == best)
            matrix.cells[(index, teacher)] = Cell(r.score_mean, r.score_std, int(r.seeds), r.pct_of_teacher,
                                                  r.problems, is_best, r.ci_low, r.ci_high, r.train_steps,
                                                  r.images_seen, int(r.data_draws), int(r.student_seeds))
    return matrix


def matrices(summary: pd.DataFrame, references: pd.DataFrame) -> list[Matrix]:
    """One Matrix per (dataset, epoch budget), in sorted order."""
    if summary.empty:
        return []
    return [_matrix(dataset, int(epochs), rows, references)
            for (dataset, epochs), rows in summary.groupby(["dataset", "epochs"], sort=True)]


PROBLEM_HEADER = ["id", "study", "dataset", "teacher", "student", "method", "epochs", "seed", "status", "error"]


def problem_cells(row: pd.Series) -> list[str]:
    """One unfinished run as display strings (the error's first line, shortened)."""
    error = str(row["error"]).splitlines()[0][:160] if isinstance(row["error"], str) and row["error"] else ""
    return [str(row[c]) for c in PROBLEM_HEADER[:-1]] + [error]


WARNING_SIGN = "⚠"


def marks_text(numbers: list[int] | None, sign: str = WARNING_SIGN) -> str:
    """' ⚠1,3' after a cell or teacher name with warnings; '' without."""
    return f" {sign}{','.join(str(n) for n in numbers)}" if numbers else ""


def matrix_header(matrix: Matrix, sign: str = WARNING_SIGN) -> list[str]:
    """Column names of a matrix table ('setting' only when some row has hparams that differ); a teacher column
    with warnings carries their numbers."""
    setting = ["setting"] if matrix.has_settings else []
    teachers = [t + marks_text(matrix.teacher_marks.get(t), sign) for t in matrix.teachers]
    return ["student", "kind", "size MB", "inference MB", "method", *setting, *teachers]


def warning_lines(matrix: Matrix, sign: str = WARNING_SIGN) -> list[str]:
    """'⚠1 text' for each warning of the matrix, in number order."""
    return [f"{sign}{number} {text}" for number, text in enumerate(matrix.notes, start=1)]


def probe_sentence(matrix: Matrix) -> str:
    """The caption's sentence for teachers whose reference is a linear probe on frozen features ('' if none)."""
    probes = [t for t in matrix.teachers if t in matrix.references
              and matrix.reference_kinds.get(t, "linear-probe") == "linear-probe"]
    if not probes:
        return ""
    return (f" The teacher reference of {', '.join(probes)} is a linear probe on its frozen features, not a teacher "
            "trained on this task: % of T and the KD targets are that probe's.")


def reference_text(matrix: Matrix) -> str:
    """'effnet-lite0 93.0%' per teacher with a probe run, for the line above a matrix."""
    found = [f"{t} {matrix.references[t] * 100:.1f}% ({matrix.reference_kinds.get(t, 'linear-probe')})"
             for t in matrix.teachers if t in matrix.references]
    return ", ".join(found) if found else "no teacher-probe run"


def matrix_note(matrix: Matrix, best_marker: str) -> str:
    """The sentence under a matrix heading saying how to read it."""
    return (f"Each row is one setting (hyperparameters, data config, study); cells: mean ± std over seeds, then "
            f"[{CI_LEGEND}] of the mean (no std or CI with n=1); {best_marker} = best in its teacher column; "
            "n = distinct seeds of finished runs (with several data draws, i.e. split_seed / labeled_seed: n = "
            "draws, each the mean over its seeds); steps and img = optimizer steps and training images per run; "
            "inference MB includes the teacher backbone a head student still needs; "
            f"% of T = share of the teacher's own score ({reference_text(matrix)}).{probe_sentence(matrix)}"
            + (f" {WARNING_SIGN}N = warning N, listed under the table." if matrix.notes else ""))
