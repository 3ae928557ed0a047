"""The worker loops (claim a grid cell or draw a study trial, run it, store its row, tell Optuna) and `bench worker`."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.progress import Progress

from bench.config.study import StudyModel, suggest_spec
from bench.core.errors import BenchError
from bench.core.names import (
    CONFIG_ATTR,
    GRID_KIND,
    KIND_ATTR,
    LABEL_ATTR,
    SEARCH_KIND,
    SPEC_ATTR,
    SPEC_KEY_ATTR,
    TRIALS_ATTR,
    WEIGHTS_ATTR,
    WORKER_ATTR,
    WORKER_JOB_ATTR,
    WORKER_PROCESS_ATTR,
)
from bench.core.spec import ExperimentSpec
from bench.run.bundle import MAX_BUNDLE, bundle_key
from bench.run.context import RunContext
from bench.run.metrics import score_summary
from bench.run.workbench import Workbench
from bench.store.lock import ENQUEUE_LOCK, database_lock
from bench.store.readonly import require_writable
from bench.store.records import EpochRecord, RunRecord
from bench.store.results import Store
from bench.sweep.budget import budget_spent, reserve_trial, state_counts
from bench.sweep.cell import (
    CellCounts,
    cell_progress,
    failed_record,
    preflight,
    probe_cells,
    run_and_store,
    run_and_store_bundle,
    store_failure,
)
from bench.sweep.checkpoint import Checkpointer
from bench.sweep.context import Sweep
from bench.sweep.optuna_private import as_in_optimize, stop_requested, trial_id
from bench.sweep.queue import (
    RESUMES_ATTR,
    WorkerOptions,
    claim_matching,
    claim_waiting,
    fail_stale_trials,
    has_heartbeats,
    heartbeat,
    load_bench_study,
    open_specs,
    open_storage,
    require_study,
)
from bench.sweep.signals import stop_signals_interrupt
from bench.sweep.strategy import load_with_strategy

log = logging.getLogger(__name__)


class CellFailed(Exception):
    """A trial raised (a bug, NaN loss); the study goes on, the trial is FAIL."""


@dataclass(frozen=True)
class WorkerSummary:
    """What this worker did."""

    study: str
    kind: str
    counts: CellCounts


def run_worker(study_name: str, db_url: str, context: RunContext, options: WorkerOptions,
               console: Console | None = None, weights: dict[str, str] | None = None,
               max_cells: int | None = None) -> WorkerSummary:
    """`bench worker`: everything it needs (specs, weights paths, search space) comes from the database."""
    console = console or Console(stderr=True)
    require_writable(db_url, "a worker records every trial it takes")
    require_study(study_name, db_url)  # a mistyped name must not create Optuna's schema in a new database
    storage = open_storage(db_url, options)
    study = load_bench_study(study_name, storage)
    kind = study.user_attrs.get(KIND_ATTR)
    if kind == GRID_KIND:
        if options.storage is not None:
            raise BenchError(f"--storage {options.storage}: only a `bench study` search runs through a gRPC proxy; "
                             "a grid's workers claim cells in the database itself (leave --storage out)")
        bench = Workbench(context, {**study.user_attrs.get(WEIGHTS_ATTR, {}), **(weights or {})})
        preflight(bench, open_specs(study))
        sweep = Sweep(study, storage, bench, Store(db_url), options, console)
        return WorkerSummary(study_name, kind, work_grid(sweep, max_cells))
    if kind == SEARCH_KIND:
        model = stored_model(study)
        bench = Workbench(context, {**model.weights, **(weights or {})})
        preflight(bench, probe_cells(model.teacher, model.dataset, model.data.config().as_dict()))
        sweep = Sweep(load_with_strategy(study_name, storage, model), storage, bench, Store(db_url), options,
                      console)
        return WorkerSummary(study_name, kind, work_study(sweep, model, max_cells))
    raise BenchError(f"--study {study_name!r} was not made by `bench run` or `bench study`; nothing to work on")


def stored_model(study) -> StudyModel:  # noqa: ANN001
    """The study's validated config, as `bench study` stored it (workers rebuild the search from it)."""
    return StudyModel.model_validate(study.user_attrs[CONFIG_ATTR])


# Grid cells: enqueued trials, claimed one at a time.

def work_grid(sweep: Sweep, max_cells: int | None = None) -> CellCounts:
    """Claim and run cells until no trial waits and none runs elsewhere (a dead worker's cell comes back)."""
    from optuna.trial import TrialState

    counts = CellCounts()
    fail_stale_trials(sweep.study, sweep.storage)  # a dead worker's cell counts as waiting from the start
    waiting = len(sweep.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    told = False
    with stop_signals_interrupt(), cell_progress(sweep.console) as progress:  # SIGTERM: as Ctrl-C
        grid_bar = progress.add_task(f"grid {sweep.name}", total=waiting)
        while max_cells is None or counts.done + counts.failed + counts.skipped < max_cells:
            fail_stale_trials(sweep.study, sweep.storage)
            trial = claim_waiting(sweep.study, sweep.storage)
            if trial is None:
                if not _others_running(sweep, told):
                    break
                told = True
                time.sleep(sweep.options.poll_seconds)  # others are running cells; theirs come back if they die
                continue
            room = None if max_cells is None else max_cells - (counts.done + counts.failed + counts.skipped) - 1
            companions = bundle_companions(sweep, trial, room)
            outcomes = run_bundle_cells(sweep, [trial, *companions], progress) if companions is not None else [
                run_cell(sweep, trial, progress)]
            for outcome in outcomes:
                setattr(counts, outcome, getattr(counts, outcome) + 1)
                progress.advance(grid_bar)
    return counts


def bundle_companions(sweep: Sweep, trial, room: int | None) -> list | None:  # noqa: ANN001 - optuna types
    """Under --bundle auto: the waiting cells claimed to train in one bundle with this claimed one (the same
    bundle_key, no checkpoint), at most MAX_BUNDLE in all, possibly none: a bundleable cell trains in the stacked
    model even alone, so its numbers never depend on which cells happened to be waiting (each slice computes as
    if alone: tests/run/test_bundle.py). None: it runs through the single-run loop (--bundle off, a student or
    method that does not bundle, or a cell resuming from its checkpoint)."""
    spec = ExperimentSpec.from_dict(trial.user_attrs[SPEC_ATTR])
    key = bundle_key(spec) if sweep.options.bundle == "auto" else None
    if key is None or _has_checkpoint(sweep, spec):
        return None
    limit = MAX_BUNDLE - 1 if room is None else min(MAX_BUNDLE - 1, room)
    if limit <= 0:
        return []

    def fits(frozen) -> bool:  # noqa: ANN001 - optuna FrozenTrial
        values = frozen.user_attrs.get(SPEC_ATTR)
        if values is None:
            return False
        other = ExperimentSpec.from_dict(values)
        return bundle_key(other) == key and not _has_checkpoint(sweep, other)

    return claim_matching(sweep.study, sweep.storage, fits, limit)


def _has_checkpoint(sweep: Sweep, spec: ExperimentSpec) -> bool:
    return Checkpointer(sweep.options.run_dir, spec.key, spec.epochs).path.is_file()


def run_bundle_cells(sweep: Sweep, trials: list, progress: Progress) -> list[str]:  # noqa: ANN001 - optuna types
    """Run claimed grid trials as one bundle, store each row once, tell Optuna each trial's own value; the
    outcome of each (CellCounts fields). Ctrl-C or SIGTERM interrupts every cell as interrupt_cell does one."""
    from optuna.trial import TrialState

    outcomes, cells = [], []
    for trial in trials:
        spec = ExperimentSpec.from_dict(trial.user_attrs[SPEC_ATTR])
        stored = sweep.store.run(spec.key)
        if stored is not None and stored.status == "done":  # a retried trial whose first worker finished the row
            sweep.study.tell(trial, stored.val_acc)
            outcomes.append("skipped")
        else:
            cells.append((trial, spec, trial.user_attrs.get(LABEL_ATTR) or spec.label()))
    if not cells:
        return outcomes
    bars = [progress.add_task(f"  {label} (bundle of {len(cells)})", total=max(spec.epochs, 1))
            for _, spec, label in cells]
    try:
        with ExitStack() as beats:
            for trial, _, _ in cells:
                beats.enter_context(heartbeat(sweep.storage, trial_id(trial)))
            results = run_and_store_bundle(sweep, [spec for _, spec, _ in cells], [trial for trial, _, _ in cells],
                                           [lambda _epoch, bar=bar: progress.advance(bar) for bar in bars])
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM / SIGUSR2 (bench/sweep/signals.py)
        for trial, spec, label in cells:
            interrupt_cell(sweep, trial, spec, label, stop)
        raise
    except BenchError:
        for trial, _, _ in cells:
            sweep.study.tell(trial, state=TrialState.FAIL)
        raise
    finally:
        for bar in bars:
            progress.remove_task(bar)
    for (trial, spec, label), result in zip(cells, results, strict=True):
        outcomes.append(_told(sweep, trial, spec, label, result))
    return outcomes


def _told(sweep: Sweep, trial, spec: ExperimentSpec, label: str,  # noqa: ANN001 - optuna.Trial
          result: tuple[RunRecord, bool] | Exception) -> str:
    """Tell Optuna how one bundled cell ended and say it; its outcome (a CellCounts field)."""
    from optuna.trial import TrialState

    if isinstance(result, Exception):
        sweep.study.tell(trial, state=TrialState.FAIL)
        try:
            raise result
        except Exception as error:  # noqa: BLE001 - re-raised here so store_failure prints its traceback
            store_failure(sweep, spec, error, trial.number, label)
        return "failed"
    record, written = result
    sweep.study.tell(trial, record.val_acc)
    sweep.console.print(f"{label}: {score_summary(record)} ({record.size_mb:.3f} MB, bundle of "
                        f"{record.bundle_size})", highlight=False, soft_wrap=True)
    return "done" if written else "skipped"


def _others_running(sweep: Sweep, told: bool) -> bool:
    """Whether cells still wait or run elsewhere; says once that this worker waits for them."""
    from optuna.trial import TrialState

    running = sweep.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    if running and not told:
        sweep.console.print(f"waiting for {len(running)} cell(s) running elsewhere; a dead worker's cell is "
                            f"retried here after {sweep.options.grace_period} s without a heartbeat (at once if it "
                            "ran on this machine and its process is gone)", highlight=False)
    return bool(running)


def run_cell(sweep: Sweep, trial, progress: Progress) -> str:  # noqa: ANN001 - optuna.Trial
    """Run one claimed grid trial, store its row once, tell Optuna; returns the outcome (a CellCounts field)."""
    from optuna.trial import TrialState

    spec = ExperimentSpec.from_dict(trial.user_attrs[SPEC_ATTR])
    stored = sweep.store.run(spec.key)
    if stored is not None and stored.status == "done":  # a retried trial whose first worker finished the row
        sweep.study.tell(trial, stored.val_acc)
        return "skipped"
    label = trial.user_attrs.get(LABEL_ATTR) or spec.label()  # names the hparams that differ within the grid
    epochs_bar = progress.add_task(f"  {label}", total=max(spec.epochs, 1))
    try:
        with heartbeat(sweep.storage, trial_id(trial)):
            record, written = run_and_store(sweep, spec, trial.number,
                                            on_epoch=lambda _epoch: progress.advance(epochs_bar), trial=trial)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM / SIGUSR2 (bench/sweep/signals.py)
        interrupt_cell(sweep, trial, spec, label, stop)
        raise
    except BenchError:
        sweep.study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as error:  # noqa: BLE001 - a bug, a NaN or a storage error in one cell must not stop the grid
        sweep.study.tell(trial, state=TrialState.FAIL)
        store_failure(sweep, spec, error, trial.number, label)
        return "failed"
    finally:
        progress.remove_task(epochs_bar)
    sweep.study.tell(trial, record.val_acc)
    resumed = f", resumed after epoch {record.resumed_from_epoch}" if record.resumed_from_epoch else ""
    sweep.console.print(f"{label}: {score_summary(record)} ({record.size_mb:.3f} MB{resumed})",
                        highlight=False, soft_wrap=True)
    return "done" if written else "skipped"


def interrupt_cell(sweep: Sweep, trial, spec: ExperimentSpec, label: str,  # noqa: ANN001
                   stop: KeyboardInterrupt | None = None) -> None:
    """Ctrl-C or SIGTERM: the cell's trial ends now and a fresh copy waits, so the next `bench run` (or any
    worker) resumes it at once from its last epoch checkpoint instead of waiting for its heartbeat to go stale; its
    row says `interrupted` until then."""
    from optuna.trial import TrialState

    mine = (WORKER_ATTR, WORKER_JOB_ATTR, WORKER_PROCESS_ATTR)
    attrs = {key: value for key, value in trial.user_attrs.items() if key not in mine}
    attrs[RESUMES_ATTR] = trial.number  # claimed before fresh cells: the restart resumes it first
    sweep.study.tell(trial, state=TrialState.FAIL)
    with database_lock(sweep.store.url, ENQUEUE_LOCK):  # never beside another process's enqueue of the same cell
        sweep.study.enqueue_trial({}, user_attrs=attrs)
    error = stop if stop is not None and stop.args else KeyboardInterrupt(
        "interrupted (Ctrl-C); its epoch checkpoint is kept and the next run resumes it")
    sweep.store.save_run(failed_record(spec, sweep.name, error, trial.number, status="interrupted"))
    sweep.console.print(f"interrupted {label}: its checkpoint is kept; `bench run FILE` or "
                        f"`bench worker --study {sweep.name}` resumes it", highlight=False, soft_wrap=True)


# Study trials: drawn by the study's sampler, run on val only.

def work_study(sweep: Sweep, model: StudyModel, max_cells: int | None = None,
               timeout: float | None = None) -> CellCounts:
    """Run trials of a stored study until its trial budget is spent, any number of workers at once: each trial is
    reserved atomically (bench/sweep/budget.py); while every free slot runs elsewhere, wait for those trials (a dead
    worker's trial comes back to be retried here), except through a gRPC proxy, where no heartbeat tells the dead."""
    target = int(sweep.study.user_attrs.get(TRIALS_ATTR, model.trials))
    before = state_counts(sweep.study)
    deadline = None if timeout is None else time.monotonic() + timeout
    beats = has_heartbeats(sweep.storage)
    objective = study_objective(sweep, model)
    ran, told = 0, False
    with stop_signals_interrupt(), cell_progress(sweep.console) as progress:  # SIGTERM: as Ctrl-C
        bar = progress.add_task(study_line(sweep.study), total=target, completed=_finished(sweep.study))
        while max_cells is None or ran < max_cells:
            if deadline is not None and deadline <= time.monotonic():
                break
            if beats:
                fail_stale_trials(sweep.study, sweep.storage)  # a dead worker's trial waits as a retry from now
            trial = reserve_trial(sweep.study, sweep.store.url, target, on_reserved=_first_beat(sweep, beats))
            if trial is None:
                counts = state_counts(sweep.study)
                if budget_spent(counts, target) or not beats or not counts.get("RUNNING"):
                    break
                if not told:
                    sweep.console.print(f"the budget of {target} trials is taken: waiting for "
                                        f"{counts['RUNNING']} trial(s) running elsewhere (a dead worker's is retried "
                                        f"here after {sweep.options.grace_period} s without a heartbeat)",
                                        highlight=False)
                    told = True
                time.sleep(sweep.options.poll_seconds)
                continue
            with as_in_optimize(sweep.study):  # as Optuna's loop: a grid sampler may stop the study in tell
                run_study_trial(sweep, objective, trial, beats)
            ran += 1
            progress.update(bar, completed=_finished(sweep.study), description=study_line(sweep.study))
            if stop_requested(sweep.study):  # the grid sampler has drawn every point of its grid
                break
    after = state_counts(sweep.study)
    return CellCounts(done=after.get("COMPLETE", 0) - before.get("COMPLETE", 0)
                      + after.get("PRUNED", 0) - before.get("PRUNED", 0),
                      failed=after.get("FAIL", 0) - before.get("FAIL", 0))


def _first_beat(sweep: Sweep, beats: bool):  # noqa: ANN202 - a (trial) -> None
    """Inside the reservation: the trial's first heartbeat, so a worker dying at once leaves a stale trial."""
    def beat(trial) -> None:  # noqa: ANN001 - optuna.Trial
        if beats:
            sweep.storage.record_heartbeat(trial_id(trial))
    return beat


def run_study_trial(sweep: Sweep, objective, trial, beats: bool) -> None:  # noqa: ANN001 - optuna types
    """Run one reserved trial with heartbeats and tell Optuna how it ended (as `study.optimize` would): pruned,
    failed (CellFailed: the study goes on) or its value(s); anything else (Ctrl-C, SIGTERM) fails it and stops."""
    import optuna
    from optuna.trial import TrialState

    try:
        with heartbeat(sweep.storage, trial_id(trial)) if beats else nullcontext():
            values = objective(trial)
    except optuna.TrialPruned:
        sweep.study.tell(trial, state=TrialState.PRUNED)
    except CellFailed as failed:
        sweep.study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %s failed: %s", trial.number, failed)
    except BaseException:
        sweep.study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        sweep.study.tell(trial, values)


def _finished(study) -> int:  # noqa: ANN001
    counts = state_counts(study)
    return sum(counts.get(state, 0) for state in ("COMPLETE", "PRUNED", "FAIL"))


def study_line(study) -> str:  # noqa: ANN001
    """The study bar's text: best value so far (or the Pareto front's size), pruned and failed trials."""
    counts = state_counts(study)
    if len(study.directions) > 1:
        best = f"Pareto front {len(study.best_trials)}" if counts.get("COMPLETE") else "no trial done yet"
    else:
        best = f"best {study.best_value:.4f}" if counts.get("COMPLETE") else "no trial done yet"
    return f"study {study.study_name}: {best}, {counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed"


def study_objective(sweep: Sweep, model: StudyModel):  # noqa: ANN201 - an Optuna objective
    """Suggest a spec, run and store it on val only (reporting epochs to the pruner); the trial's value(s)."""
    import optuna

    metrics = list(model.objectives)
    prune = len(metrics) == 1 and model.pruner_name != "none"

    def values(record: RunRecord) -> tuple[float, ...] | float:
        found = tuple(float(getattr(record, metric)) for metric in metrics)
        return found if len(metrics) > 1 else found[0]

    def objective(trial: optuna.Trial) -> tuple[float, ...] | float:
        spec = suggest_spec(trial, model)
        trial.set_user_attr(SPEC_KEY_ATTR, spec.key)
        trial.set_user_attr(SPEC_ATTR, spec.to_dict())
        stored = sweep.store.run(spec.key)
        if stored is not None and stored.status == "done":  # the sampler proposed a spec already measured
            return values(stored)
        seen: list[EpochRecord] = []

        def on_epoch(record: EpochRecord) -> None:
            seen.append(record)
            if prune and record.val_acc is not None:
                trial.report(record.val_acc, record.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"val_acc {record.val_acc:.4f} after epoch {record.epoch}")

        record = _run_trial(sweep, spec, trial, on_epoch, seen)
        sweep.console.print(f"trial {trial.number} {spec.label()}: val_acc {record.val_acc:.4f}", highlight=False)
        return values(record)

    return objective


def _run_trial(sweep: Sweep, spec: ExperimentSpec, trial: Any, on_epoch: Any,
               seen: list[EpochRecord]) -> RunRecord:
    """Run and store one trial's spec on val; a pruned run is a pruned row, a NaN or a bug a failed row."""
    import optuna

    number = trial.number
    try:
        return run_and_store(sweep, spec, number, on_epoch, evaluate_test=False, trial=trial)[0]
    except optuna.TrialPruned as pruned:
        row = failed_record(spec, sweep.name, pruned, number, status="pruned")  # keeps its epochs and last score
        sweep.store.save_run(replace(row, error=str(pruned), val_acc=seen[-1].val_acc if seen else None,
                                     epoch_records=tuple(seen)))
        raise
    except BenchError:
        raise
    except Exception as error:
        store_failure(sweep, spec, error, number, f"trial {number} {spec.label()}")
        raise CellFailed(f"{type(error).__name__}: {error}") from error

