"""`bench study`: an Optuna search on the val split through the worker's trial loop, then the best re-run on test."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

from rich.console import Console

from bench.config.grid import Grid, scratch_twin, sweep_specs
from bench.config.study import StudyModel
from bench.core.errors import BenchError
from bench.core.names import BASELINE_METHOD, CONFIG_ATTR, FINAL_SUFFIX, KIND_ATTR, SEARCH_KIND, SPEC_ATTR, TRIALS_ATTR
from bench.core.spec import ExperimentSpec
from bench.run.context import RunContext
from bench.run.workbench import Workbench
from bench.store.readonly import require_writable
from bench.store.results import Store
from bench.sweep.budget import state_counts
from bench.sweep.cell import preflight, probe_cells
from bench.sweep.context import Sweep
from bench.sweep.grid import GridSummary, check_buildable, check_kind, run_grid
from bench.sweep.queue import WorkerOptions, fail_stale_trials, open_storage
from bench.sweep.strategy import load_with_strategy
from bench.sweep.worker import work_study


@dataclass(frozen=True)
class StudySummary:
    """What `bench study` found: trial counts, the best trial(s) and their re-runs on test."""

    name: str
    states: dict[str, int]
    best: list[tuple[int, tuple[float, ...], dict]]
    final: GridSummary | None
    final_test_acc: list[float]

    def describe(self) -> str:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(self.states.items()))
        lines = [f"study {self.name}: {counts}"]
        for number, values, params in self.best:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            lines.append(f"  best trial #{number}: values {[round(v, 4) for v in values]} ({shown})")
        if self.final_test_acc:
            mean = statistics.fmean(self.final_test_acc)
            spread = statistics.stdev(self.final_test_acc) if len(self.final_test_acc) > 1 else 0.0
            lines.append(f"  re-run on test ({self.name}{FINAL_SUFFIX}): test_acc {mean:.4f} ± {spread:.4f} "
                         f"over {len(self.final_test_acc)} runs")
        return "\n".join(lines)


def run_study(model: StudyModel, db_url: str, context: RunContext, options: WorkerOptions, console: Console,
              trials: int | None = None, timeout: float | None = None,
              weights: dict[str, str] | None = None) -> StudySummary:
    """Create (or continue) the study, search on val, then re-run the best trial(s) on test over fresh seeds."""
    require_writable(db_url, f"study {model.study_name!r} records every trial it draws")  # before any teacher loads
    weights = {**model.weights, **(weights or {})}
    bench = Workbench(context, weights)
    preflight(bench, probe_cells(model.teacher, model.dataset, model.data.config().as_dict()))  # before the DB
    check_buildable(bench, sweep_specs(model, [model.seed], [model.epochs], ""))
    store = Store(db_url)
    storage = open_storage(db_url, options)
    check_kind(storage, model.study_name, SEARCH_KIND)
    study = load_with_strategy(model.study_name, storage, model)
    config = model.model_dump(mode="json")
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is not None and not same_config(stored, config, model.model_dump(mode="json", exclude_defaults=True)):
        raise BenchError(f"study {model.study_name!r} already exists in {db_url} with a different config; "
                         "give the study a new name")
    study.set_user_attr(KIND_ATTR, SEARCH_KIND)
    study.set_user_attr(CONFIG_ATTR, config)
    study.set_user_attr(TRIALS_ATTR, trials or model.trials)
    for params in model.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    work_study(Sweep(study, storage, bench, store, options, console), model, timeout=timeout)
    _wait_for_others(study, storage, options)
    best = best_trials(study, model)
    if not best:
        return StudySummary(model.study_name, state_counts(study), [], None, [])
    specs = [replace(ExperimentSpec.from_dict(trial.user_attrs[SPEC_ATTR]), seed=seed)
             for trial in best for seed in model.final.seeds]
    twins = list(dict.fromkeys(scratch_twin(spec) for spec in specs if spec.method != BASELINE_METHOD)) \
        if model.final.scratch else []  # the gain table's baseline: each best setting's student, no teacher
    final = run_grid(Grid(model.study_name + FINAL_SUFFIX, None, tuple(specs + twins), weights), db_url, context,
                     console, replace(options, storage=None), bench=bench)  # a grid claims in the database itself
    runs = [store.run(spec.key) for spec in specs]
    test_accs = [run.test_acc for run in runs if run is not None and run.test_acc is not None]
    summary_best = [(t.number, tuple(t.values), dict(t.params)) for t in best]
    return StudySummary(model.study_name, state_counts(study), summary_best, final, test_accs)


def same_config(stored: object, config: object, changed: object) -> bool:
    """Whether a study's stored config is this one: a field added since it was stored (absent there) matches when
    this config leaves it at its default (absent from `changed`, the non-default dump)."""
    if not isinstance(stored, dict) or not isinstance(config, dict):
        return stored == config
    changed = changed if isinstance(changed, dict) else {}
    return all(same_config(stored[key], value, changed.get(key)) if key in stored else key not in changed
               for key, value in config.items()) and set(stored) <= set(config)


def best_trials(study, model: StudyModel) -> list:  # noqa: ANN001
    """The best trial, or up to `final.top` trials of the Pareto front (best first objective first)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(model.objectives) == 1:
        return [study.best_trial]
    sign = 1 if next(iter(model.objectives.values())) == "maximize" else -1
    front = sorted(study.best_trials, key=lambda t: -sign * t.values[0])
    return front[: model.final.top]


def _wait_for_others(study, storage, options: WorkerOptions, limit_s: float = 24 * 3600) -> None:  # noqa: ANN001
    """Let trials running on other workers finish (or be failed as stale) before picking the best."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + limit_s
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) and time.monotonic() < deadline:
        fail_stale_trials(study, storage)
        time.sleep(options.poll_seconds)
