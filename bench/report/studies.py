"""Optuna studies in the same database, drawn by optuna.visualization.matplotlib: optimisation history (searches
only), parameter importances, parallel coordinates, Pareto front (multi-objective)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.names import FINAL_SUFFIX, GRID_KIND, KIND_ATTR, SEARCH_KIND, SOURCE_ATTR
from bench.core.spec import hparam_label
from bench.report.optuna_tables import BestTrial, best_trials, has_optuna_tables, study_attrs
from bench.report.plots import Plot, pyplot, save

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


def _objective_names(study) -> list[str]:  # noqa: ANN001
    return list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])


def _optuna_plot(draw, out_dir: Path, stem: str, title: str, caption: str) -> Plot:  # noqa: ANN001
    """Draw one of optuna.visualization.matplotlib's plots and save it (PNG + SVG) like every report plot."""
    import optuna

    plt = pyplot()  # the Agg backend, before Optuna imports pyplot
    with warnings.catch_warnings(), plt.rc_context():  # Optuna sets a global style: keep it to its own figure
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = draw()
        axis = axes.flat[0] if hasattr(axes, "flat") else axes
        axis.figure.suptitle(f"{stem.split('_', 2)[-1]}: {title}", fontsize=10)
        return save(axis.figure, out_dir, stem, title, caption)


def _complete(study) -> list:  # noqa: ANN001
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def _first_objective(study):  # noqa: ANN001, ANN202 - (target, its name) for plots that take one objective
    if len(study.directions) == 1:
        return None, "objective value"
    return (lambda trial: trial.values[0]), f"{_objective_names(study)[0]} ({study.directions[0].name.lower()})"


def _history(study, out_dir: Path, kind: str, notes: list[str]) -> Plot | None:  # noqa: ANN001 - optuna.Study
    """Optuna's optimisation history, for searches only: a grid's cells or a search's /final re-runs are not
    an optimisation, so their trial order means nothing."""
    from optuna.visualization.matplotlib import plot_optimization_history

    if kind == GRID_KIND or study.study_name.endswith(FINAL_SUFFIX):
        notes.append("no optimisation history: its trials are enqueued cells, not a search")
        return None
    complete = _complete(study)
    if not complete:
        return None
    target, name = _first_objective(study)
    caption = f"Objective of each completed trial ({len(complete)}) and the best value so far" + (
        "; first objective of a multi-objective study." if target is not None else ".")
    return _optuna_plot(lambda: plot_optimization_history(study, target=target, target_name=name), out_dir,
                        f"study_history_{_slug(study.study_name)}", "optimisation history", caption)


ROUGH_IMPORTANCE_TRIALS = 20  # below this, importances get a caveat in their caption


def _importance_evaluator():  # noqa: ANN202 - (optuna evaluator or None, its name)
    """fANOVA when scikit-learn is installed, else Optuna's default (PED-ANOVA, no extra dependency)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return None, "PED-ANOVA"
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=0), "fANOVA"


def _with_params(study, notes: list[str], what: str) -> list | None:  # noqa: ANN001
    with_params = [t for t in _complete(study) if t.params]
    if len(with_params) < MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(f"{what} skipped: {len(with_params)} completed trial(s) with sampled "
                     f"parameters, need {MIN_TRIALS_FOR_IMPORTANCE} (grid cells are enqueued without parameters)")
        return None
    return with_params


def _importances(study, out_dir: Path, notes: list[str]) -> Plot | None:  # noqa: ANN001
    from optuna.visualization.matplotlib import plot_param_importances

    with_params = _with_params(study, notes, "parameter importances")
    if with_params is None:
        return None
    evaluator, evaluator_name = _importance_evaluator()
    target, name = _first_objective(study)
    caption = (f"How much of the objective's variance each parameter explains ({evaluator_name}, "
               f"{len(with_params)} trials" + (", first objective)." if target is not None else ")."))
    if len(with_params) < ROUGH_IMPORTANCE_TRIALS:
        caption += (f" With {len(with_params)} trials these shares are rough: the evaluator fits its model to "
                    f"{len(with_params)} points, and another seed or a few more trials can reorder them.")
    try:
        return _optuna_plot(lambda: plot_param_importances(study, evaluator=evaluator, target=target,
                                                           target_name=name),
                            out_dir, f"study_importance_{_slug(study.study_name)}", "parameter importances", caption)
    except (ImportError, RuntimeError, ValueError) as error:
        notes.append(f"parameter importances skipped: {type(error).__name__}: {str(error).splitlines()[0]}")
        return None


def _parallel(study, out_dir: Path, notes: list[str]) -> Plot | None:  # noqa: ANN001
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    with_params = _with_params(study, notes, "parallel coordinates")
    if with_params is None:
        return None
    target, name = _first_objective(study)
    caption = f"Each completed trial ({len(with_params)}) as a line through its parameters, coloured by {name}."

    def draw():  # noqa: ANN202 - Optuna's axes, made readable: slanted labels, a colour map with no white end
        axis = plot_parallel_coordinate(study, target=target, target_name=name)
        axis.figure.set_size_inches(max(6.4, 1.4 * (len(axis.get_xticks()) + 1)), 4.8)
        for label in axis.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
        for collection in axis.collections:
            collection.set_cmap("viridis")
        for image in axis.images:
            image.set_cmap("viridis")
        axis.figure.tight_layout()
        return axis

    return _optuna_plot(draw, out_dir, f"study_parallel_{_slug(study.study_name)}", "parallel coordinates", caption)


def _pareto(study, out_dir: Path, notes: list[str]) -> Plot | None:  # noqa: ANN001
    from optuna.visualization.matplotlib import plot_pareto_front

    if len(study.directions) < 2:
        notes.append("Pareto front skipped: single-objective study")
        return None
    complete = _complete(study)
    if not complete:
        return None
    front = len(study.best_trials)
    names = [f"{label} ({direction.name.lower()})"
             for label, direction in zip(_objective_names(study), study.directions, strict=False)]
    caption = f"{front} of {len(complete)} completed trials are Pareto-optimal (first two objectives)."
    targets = None if len(study.directions) == 2 else (lambda trial: trial.values[:2])
    return _optuna_plot(lambda: plot_pareto_front(study, target_names=names[:2], targets=targets), out_dir,
                        f"study_pareto_{_slug(study.study_name)}", "Pareto front", caption)


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
        plots = [_history(study, out_dir, report.kind, report.notes), _importances(study, out_dir, report.notes),
                 _parallel(study, out_dir, report.notes), _pareto(study, out_dir, report.notes)]
        report.plots = [p for p in plots if p is not None]
        reports.append(report)
    return reports
