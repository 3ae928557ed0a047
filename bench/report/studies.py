"""Optuna studies in the same database: optimisation history, parameter importances, Pareto front."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from bench.names import FINAL_SUFFIX, KIND_ATTR, SEARCH_KIND, SOURCE_ATTR
from bench.report.optuna_tables import BestTrial, best_trials, has_optuna_tables, study_attrs
from bench.report.plots import Plot, pyplot, save
from bench.spec import hparam_label

MIN_TRIALS_FOR_IMPORTANCE = 2
CHOSEN = ("teacher", "student", "method", "dataset")  # a best trial's spec fields named next to its parameters


@dataclass
class StudyReport:
    """One study's plots and the notes on what could not be drawn and why."""

    name: str
    directions: list[str]
    trials: dict[str, int]
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_file: str = ""  # the grid file, when the study is a grid run by `bench run`
    kind: str = ""  # bench_kind user attr: "grid" or "study" (a search)
    best: list[BestTrial] = field(default_factory=list)  # a search's best (or Pareto-optimal) trials

    def summary_lines(self) -> list[str]:
        """What kind of study this is, where it came from and, for a search, its best parameters."""
        lines = []
        if self.kind == SEARCH_KIND:
            lines.append("`bench study` search: its trials ran on the val split only and are not in the matrix; its "
                         f"reported numbers are the best trial(s) re-run on test as study {self.name}{FINAL_SUFFIX}.")
        if self.source_file:
            lines.append(f"source file: {self.source_file}")
        for trial in self.best:
            values = ", ".join(f"{v:.4g}" for v in trial.values)
            chosen = "/".join(str(trial.spec[k]) for k in CHOSEN if k in trial.spec)
            params = hparam_label(trial.params, list(trial.params)) or "no sampled parameters"
            where = f" ({chosen})" if chosen else ""
            lines.append(f"best trial #{trial.number}{where}: objective {values}; parameters {params}")
        return lines


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _history(study, out_dir: Path) -> Plot | None:  # noqa: ANN001 - optuna.Study
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if not complete:
        return None
    plt = pyplot()
    count = len(study.directions)
    figure, axes = plt.subplots(1, count, figsize=(5.5 * count, 3.6), squeeze=False)
    for index, direction in enumerate(study.directions):
        axis = axes[0][index]
        numbers = [t.number for t in complete]
        values = [t.values[index] for t in complete]
        axis.scatter(numbers, values, s=14, label="trial")
        pick = max if direction.name == "MAXIMIZE" else min
        best = [pick(values[: i + 1]) for i in range(len(values))]
        axis.step(numbers, best, where="post", color="C3", label=f"best so far ({direction.name.lower()})")
        axis.set_xlabel("trial number")
        axis.set_ylabel(f"objective {index}" if count > 1 else "objective value")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"study {study.study_name}: optimisation history", fontsize=10)
    caption = f"Objective of each completed trial ({len(complete)}) and the best value so far."
    return save(figure, out_dir, f"study_history_{_slug(study.study_name)}", "optimisation history", caption)


def _importance_evaluator():  # noqa: ANN202 - (optuna evaluator or None, its name)
    """fANOVA when scikit-learn is installed, else Optuna's default (PED-ANOVA, no extra dependency)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return None, "PED-ANOVA"
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=0), "fANOVA"


def _importances(study, out_dir: Path, notes: list[str]) -> Plot | None:  # noqa: ANN001
    from optuna.trial import TrialState

    with_params = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params]
    if len(with_params) < MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(f"parameter importances skipped: {len(with_params)} completed trial(s) with sampled "
                     f"parameters, need {MIN_TRIALS_FOR_IMPORTANCE} (grid cells are enqueued without parameters)")
        return None
    evaluator, evaluator_name = _importance_evaluator()
    try:
        import optuna

        target = None if len(study.directions) == 1 else (lambda t: t.values[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA's note on `target` direction
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
    except (ImportError, RuntimeError, ValueError) as error:
        notes.append(f"parameter importances skipped: {type(error).__name__}: {str(error).splitlines()[0]}")
        return None
    plt = pyplot()
    names = list(importances)[::-1]
    figure, axis = plt.subplots(figsize=(6, 0.4 * len(names) + 1.6))
    axis.barh(names, [importances[n] for n in names], color="C2")
    axis.set_xlabel(f"importance ({evaluator_name}" + (", first objective" if len(study.directions) > 1 else "") + ")")
    axis.set_title(f"study {study.study_name}: parameter importances", fontsize=10)
    caption = f"How much of the objective's variance each parameter explains ({len(with_params)} trials)."
    return save(figure, out_dir, f"study_importance_{_slug(study.study_name)}", "parameter importances", caption)


def _pareto(study, out_dir: Path, notes: list[str]) -> Plot | None:  # noqa: ANN001
    from optuna.trial import TrialState

    if len(study.directions) < 2:
        notes.append("Pareto front skipped: single-objective study")
        return None
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if not complete:
        return None
    best = {t.number for t in study.best_trials}
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.4))
    others = [t for t in complete if t.number not in best]
    front = sorted((t for t in complete if t.number in best), key=lambda t: t.values[0])
    axis.scatter([t.values[0] for t in others], [t.values[1] for t in others], s=14, color="C0", label="trial")
    axis.plot([t.values[0] for t in front], [t.values[1] for t in front], "o-", color="C3", label="Pareto front")
    names = [d.name.lower() for d in study.directions]
    labels = study.metric_names or ["objective 0", "objective 1"]
    axis.set_xlabel(f"{labels[0]} ({names[0]})")
    axis.set_ylabel(f"{labels[1]} ({names[1]})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(f"study {study.study_name}: Pareto front", fontsize=10)
    caption = f"{len(front)} of {len(complete)} completed trials are Pareto-optimal (first two objectives)."
    return save(figure, out_dir, f"study_pareto_{_slug(study.study_name)}", "Pareto front", caption)


def study_reports(db_url: str, names: set[str] | None, out_dir: Path) -> list[StudyReport]:
    """Plots for every study in the database (or only `names`); none when Optuna's tables are absent."""
    if not has_optuna_tables(db_url):
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from bench.store.session import driver_url

    # the report reads: no table creation, no schema upgrade (a read-write open would create Optuna's tables)
    storage = optuna.storages.RDBStorage(driver_url(db_url), skip_compatibility_check=True, skip_table_creation=True)
    attrs = study_attrs(db_url)
    reports = []
    for summary in sorted(optuna.get_all_study_summaries(storage, include_best_trial=False),
                          key=lambda s: s.study_name):
        if names is not None and summary.study_name not in names:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states: dict[str, int] = {}
        for trial in study.get_trials(deepcopy=False):
            states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
        mine = attrs.get(study.study_name, {})
        report = StudyReport(study.study_name, [d.name.lower() for d in study.directions], states,
                             source_file=str(mine.get(SOURCE_ATTR) or ""), kind=str(mine.get(KIND_ATTR) or ""))
        if report.kind == SEARCH_KIND:
            top = int((mine.get("bench_config") or {}).get("final", {}).get("top", 3))
            report.best = best_trials(db_url, study.study_name, top)
        plots = [_history(study, out_dir), _importances(study, out_dir, report.notes),
                 _pareto(study, out_dir, report.notes)]
        report.plots = [p for p in plots if p is not None]
        reports.append(report)
    return reports
