"""Run a bundle of compatible student cells (bench/run/bundle.py) through the one pipeline: each cell is prepared
and finished by run_spec's own steps (prepare_run, finish_run), only the training is shared (train_bundle)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.core.spec import ExperimentSpec
from bench.run.kept import Keep
from bench.run.run_spec import PreparedRun, finish_run, prepare_run
from bench.run.train import Checkpointer, TrainResult, train_student
from bench.run.train_bundle import BundleCell, train_bundle
from bench.run.workbench import Workbench
from bench.store.records import EpochRecord, RunRecord


@dataclass(frozen=True)
class CellHooks:
    """What a worker gives one cell of a bundle: as run_spec's arguments for a single run."""

    trial_number: int | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    checkpoint: Checkpointer | None = None
    keep: Keep | None = None


def run_bundle(specs: Sequence[ExperimentSpec], bench: Workbench, study: str, hooks: Sequence[CellHooks] | None = None,
               evaluate_test: bool = True) -> list[RunRecord | Exception]:
    """One result per spec, in order: its done record, or the exception its cell failed with (the others go on).

    A cell whose method turns out to have parameters trains alone (train_student). A bundle of one still trains in
    the stacked model: each slice computes as if alone, so a cell's numbers do not depend on its companions.
    KeyboardInterrupt and SystemExit stop every cell (their checkpoints hold the last finished epoch).
    """
    hooks = list(hooks) if hooks is not None else [CellHooks() for _ in specs]
    outcomes: dict[int, RunRecord | Exception] = {}
    prepared: dict[int, PreparedRun] = {}
    for i, (spec, hook) in enumerate(zip(specs, hooks, strict=True)):
        try:
            prepared[i] = prepare_run(spec, bench, study, hook.trial_number, evaluate_test)
        except Exception as error:  # noqa: BLE001 - this cell fails alone
            outcomes[i] = error
    together = [i for i, run in prepared.items() if not list(run.parts.method.parameters())]
    results: dict[int, TrainResult | Exception] = {}
    if together:
        cells = [_cell(prepared[i], hooks[i]) for i in together]
        try:
            results.update(zip(together, train_bundle(cells, bench.device), strict=True))
        except Exception as error:  # noqa: BLE001 - what stops the shared loop fails each of its cells, as alone
            results.update(dict.fromkeys(together, error))
    for i in set(prepared) - set(results):
        results[i] = _alone(prepared[i], hooks[i], bench)
    for i, result in results.items():
        try:
            if isinstance(result, Exception):
                raise result
            outcomes[i] = finish_run(bench, prepared[i], result, evaluate_test, hooks[i].keep)
        except Exception as error:  # noqa: BLE001 - this cell fails alone
            outcomes[i] = error
    return [outcomes[i] for i in range(len(specs))]


def _cell(run: PreparedRun, hook: CellHooks) -> BundleCell:
    spec = run.spec
    return BundleCell(run.parts.student, run.parts.method, run.train_data, spec.hparams_dict, spec.epochs, spec.seed,
                      hook.on_epoch, hook.checkpoint, run.val_score(), run.options)


def _alone(run: PreparedRun, hook: CellHooks, bench: Workbench) -> TrainResult | Exception:
    """A cell that cannot join the bundle, trained as run_spec trains it."""
    spec = run.spec
    try:
        return train_student(run.parts.student, run.parts.method, run.train_data, spec.hparams_dict, spec.epochs,
                             spec.seed, bench.device, hook.on_epoch, hook.checkpoint, val_score=run.val_score(),
                             options=run.options)
    except Exception as error:  # noqa: BLE001 - this cell fails alone
        return error
