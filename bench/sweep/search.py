"""`bench study`: an Optuna search on the val split through the one trial function, then the best re-run on test."""

from __future__ import annotations

import statistics
import time
import traceback
from dataclasses import dataclass, replace

from rich.console import Console

from bench.checkpoint import Checkpointer
from bench.config.grid import Grid
from bench.config.study import PrunerModel, StudyModel, suggest_spec
from bench.data import DataConfig
from bench.errors import BenchError
from bench.names import CONFIG_ATTR, FINAL_SUFFIX, KIND_ATTR
from bench.run.run_spec import run_spec
from bench.run.train import NonFiniteError, check_finite
from bench.run.workbench import RunContext, Workbench
from bench.spec import ExperimentSpec
from bench.store import Store
from bench.store.records import EpochRecord, RunRecord
from bench.sweep.cells import CellCounts, failed_record
from bench.sweep.grid import GridSummary, grid_cells, preflight, run_grid
from bench.sweep.queue import WorkerOptions, fail_stale_trials, open_storage


class CellFailed(Exception):
    """A trial raised (a bug, NaN loss); the study goes on, the trial is FAIL."""


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


def build_sampler(model: StudyModel):  # noqa: ANN201
    import optuna

    seed = model.sampler.seed
    if model.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if model.sampler.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if model.sampler.name == "grid":
        space = {f: list(getattr(model, f)) for f in ("teacher", "student", "method", "dataset")
                 if len(getattr(model, f)) > 1}
        space.update({name: list(param.choices or []) for name, param in model.search.items()})
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def build_pruner(model: StudyModel):  # noqa: ANN201
    import optuna

    settings = model.pruner or PrunerModel()
    if model.pruner_name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials,
                                           n_warmup_steps=settings.n_warmup_steps)
    if model.pruner_name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=model.epochs,
                                              reduction_factor=settings.reduction_factor)
    return optuna.pruners.NopPruner()


def load_with_strategy(name: str, storage, model: StudyModel):  # noqa: ANN001, ANN201
    """Samplers and pruners are not stored by Optuna: every process builds them from the stored config."""
    import optuna

    directions = list(model.objectives.values())
    return optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                               sampler=build_sampler(model), pruner=build_pruner(model))


def make_objective(model: StudyModel, bench: Workbench, store: Store, options: WorkerOptions, console: Console):
    """The study's objective: suggest a spec, run it through run_spec on val only, report epochs, store the row."""
    import optuna

    metrics = list(model.objectives)
    prune = len(metrics) == 1 and model.pruner_name != "none"

    def values(record: RunRecord) -> tuple[float, ...]:
        return tuple(float(getattr(record, metric)) for metric in metrics)

    def objective(trial: optuna.Trial) -> tuple[float, ...] | float:
        spec = suggest_spec(trial, model)
        trial.set_user_attr("spec_key", spec.key)
        trial.set_user_attr("spec", spec.to_dict())
        stored = store.run(spec.key)
        if stored is not None and stored.status == "done":  # the sampler proposed a spec already measured
            return values(stored) if len(metrics) > 1 else values(stored)[0]
        seen: list[EpochRecord] = []

        def on_epoch(record: EpochRecord) -> None:
            seen.append(record)
            if prune and record.val_acc is not None:
                trial.report(record.val_acc, record.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"val_acc {record.val_acc:.4f} after epoch {record.epoch}")

        checkpoint = Checkpointer(options.run_dir, spec.key, spec.epochs)
        record = _run_trial(spec, trial, model, bench, store, checkpoint, on_epoch, seen, console)
        checkpoint.clear()
        console.print(f"trial {trial.number} {spec.label()}: val_acc {record.val_acc:.4f}", highlight=False)
        return values(record) if len(metrics) > 1 else values(record)[0]

    return objective


def _run_trial(spec: ExperimentSpec, trial, model: StudyModel, bench: Workbench, store: Store,  # noqa: ANN001
               checkpoint: Checkpointer, on_epoch, seen: list[EpochRecord], console: Console) -> RunRecord:
    """Run and store one trial's spec; a NaN, a bug or a storage error becomes a failed row and CellFailed."""
    import optuna

    try:
        record = check_finite(run_spec(spec, bench, model.study_name, trial.number, on_epoch, checkpoint,
                                       evaluate_test=False))
        store.save_run(record)
        return record
    except optuna.TrialPruned as pruned:
        row = failed_record(spec, model.study_name, pruned, trial.number, status="pruned")
        store.save_run(replace(row, error=str(pruned), val_acc=seen[-1].val_acc if seen else None,
                               epoch_records=tuple(seen)))
        checkpoint.clear()
        raise
    except BenchError:
        raise
    except Exception as error:
        console.print(f"[red]failed[/red] trial {trial.number} {spec.label()}: {error}", highlight=False)
        if not isinstance(error, NonFiniteError):  # a diverged run is an outcome, not a bug: no traceback
            console.print(traceback.format_exc(), markup=False, highlight=False)
        store.save_run(failed_record(spec, model.study_name, error, trial.number))  # if this fails: stop, loudly
        raise CellFailed(f"{type(error).__name__}: {error}") from error


def _state_counts(study) -> dict[str, int]:  # noqa: ANN001
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _budget_reached(study, target: int) -> bool:  # noqa: ANN001
    counts = _state_counts(study)
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) >= target or counts.get("FAIL", 0) >= target


def work_study(study, storage, store: Store, context: RunContext, options: WorkerOptions,  # noqa: ANN001
               console: Console, weights: dict[str, str], max_cells: int | None = None,
               timeout: float | None = None, bench: Workbench | None = None) -> CellCounts:
    """Run trials of a stored study until its trial budget is spent (any number of workers at once)."""
    model = StudyModel.model_validate(study.user_attrs[CONFIG_ATTR])
    target = int(study.user_attrs.get("n_trials", model.trials))
    study = load_with_strategy(study.study_name, storage, model)
    bench = bench or Workbench(context, {**model.weights, **weights})
    preflight(bench, grid_cells(_probe_grid(model)))
    before = _state_counts(study)
    deadline = None if timeout is None else time.monotonic() + timeout

    def stop_at_budget(study, _trial) -> None:  # noqa: ANN001
        if _budget_reached(study, target):
            study.stop()

    objective = make_objective(model, bench, store, options, console)
    ran = 0
    while not _budget_reached(study, target) and (max_cells is None or ran < max_cells):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        study.optimize(objective, n_trials=1, timeout=left, catch=(CellFailed,), callbacks=[stop_at_budget],
                       gc_after_trial=False)
        ran += 1
    after = _state_counts(study)
    return CellCounts(done=after.get("COMPLETE", 0) - before.get("COMPLETE", 0)
                      + after.get("PRUNED", 0) - before.get("PRUNED", 0),
                      failed=after.get("FAIL", 0) - before.get("FAIL", 0))


def _probe_grid(model: StudyModel) -> Grid:
    """One spec per teacher x dataset, for preflight and the teacher-probe cells."""
    data = DataConfig(**model.data.model_dump()).as_dict()
    specs = tuple(ExperimentSpec.create(teacher=t, student=model.student[0], method=model.method[0], dataset=d,
                                        data=data, epochs=model.epochs, seed=model.seed)
                  for t in model.teacher for d in model.dataset)
    return Grid(model.study_name, None, specs, dict(model.weights))


def run_study(model: StudyModel, db_url: str, context: RunContext, options: WorkerOptions, console: Console,
              trials: int | None = None, timeout: float | None = None,
              weights: dict[str, str] | None = None) -> StudySummary:
    """Create (or continue) the study, search on val, then re-run the best trial(s) on test over fresh seeds."""
    weights = {**model.weights, **(weights or {})}
    bench = Workbench(context, weights)
    preflight(bench, grid_cells(_probe_grid(model)))  # before the database is touched
    store = Store(db_url)
    storage = open_storage(db_url, options)
    study = load_with_strategy(model.study_name, storage, model)
    config = model.model_dump(mode="json")
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is not None and stored != config:
        raise BenchError(f"study {model.study_name!r} already exists in {db_url} with a different config; "
                         "give the study a new name")
    study.set_user_attr(KIND_ATTR, "study")
    study.set_user_attr(CONFIG_ATTR, config)
    study.set_user_attr("n_trials", trials or model.trials)
    for params in model.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    work_study(study, storage, store, context, options, console, weights, timeout=timeout, bench=bench)
    _wait_for_others(study, storage, options)
    best = best_trials(study, model)
    if not best:
        return StudySummary(model.study_name, _state_counts(study), [], None, [])
    specs = [replace(ExperimentSpec.from_dict(trial.user_attrs["spec"]), seed=seed)
             for trial in best for seed in model.final.seeds]
    final = run_grid(Grid(model.study_name + FINAL_SUFFIX, None, tuple(specs), weights), db_url, context,
                     console, options, bench=bench)
    runs = [store.run(spec.key) for spec in specs]
    test_accs = [run.test_acc for run in runs if run is not None and run.test_acc is not None]
    summary_best = [(t.number, tuple(t.values), dict(t.params)) for t in best]
    return StudySummary(model.study_name, _state_counts(study), summary_best, final, test_accs)


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
