"""`bench status NAME`: each cell of a grid or study as waiting, running (on which host, in which job), done or
failed, read from Optuna's trials (a retried cell counts once, by its latest trial)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.names import LABEL_ATTR, SPEC_KEY_ATTR, WORKER_ATTR, WORKER_JOB_ATTR
from bench.sweep.queue import WorkerOptions, load_bench_study, open_storage, require_study

STATES = {"WAITING": "waiting", "RUNNING": "running", "COMPLETE": "done", "PRUNED": "done", "FAIL": "failed"}


@dataclass(frozen=True)
class CellStatus:
    """One cell: its latest trial's state, and where it runs."""

    trial: int
    label: str
    state: str
    host: str
    job: str


def study_status(name: str, db_url: str) -> list[CellStatus]:
    """The latest trial of every cell (grid: per spec key; study: per trial), in trial order."""
    require_study(name, db_url)
    study = load_bench_study(name, open_storage(db_url, WorkerOptions()))
    latest: dict[object, object] = {}
    for trial in study.get_trials(deepcopy=False):
        latest[trial.user_attrs.get(SPEC_KEY_ATTR) or trial.number] = trial  # later trials replace retried ones
    cells = []
    for trial in sorted(latest.values(), key=lambda t: t.number):
        state = STATES.get(trial.state.name, trial.state.name.lower())
        host = str(trial.user_attrs.get(WORKER_ATTR) or "") if state == "running" else ""
        job = str(trial.user_attrs.get(WORKER_JOB_ATTR) or "") if state == "running" else ""
        label = trial.user_attrs.get(LABEL_ATTR) or str(trial.user_attrs.get(SPEC_KEY_ATTR, ""))[:12] or str(
            trial.params or "")
        cells.append(CellStatus(trial.number, label, state, host.rsplit(":", 1)[0], job))
    return cells


def state_totals(cells: list[CellStatus]) -> dict[str, int]:
    """How many cells are in each of waiting, running, done, failed (always all four)."""
    totals = {"waiting": 0, "running": 0, "done": 0, "failed": 0}
    for cell in cells:
        totals[cell.state] = totals.get(cell.state, 0) + 1
    return totals
