"""A study's trial budget as one atomic reservation shared by every worker, so N workers never run more than it.

How: a worker takes its next trial (Optuna's `study.ask()`: a retried or enqueued WAITING trial first, else a new
one) only while it holds the database's `budget` lock, and only when the study's COMPLETE + PRUNED + RUNNING
trials are fewer than the budget (and its FAIL trials too). `ask()` commits the trial as RUNNING before the lock is
let go, so the next worker's count includes it. The lock is bench/store/lock.py's: a PostgreSQL advisory lock
held by the server (freed when the holder's connection drops, even if it is killed), or on SQLite an fcntl lock on a
file beside the database (where SQLite's own locks live, so wherever SQLite is safe, so is this). It is taken on
the results database, which every worker reaches even when Optuna's traffic goes through a gRPC proxy.

Why this and not a counter row or a table of numbered slots (a conditional UPDATE or a unique INSERT is atomic on
both databases too): the trial's own state is the reservation. A trial whose worker dies (stale heartbeat: FAIL and
a WAITING retry) or is stopped (Ctrl-C, SIGTERM: FAIL) gives its slot back by itself, and its retry takes the
slot again through the same `ask()`; a counter would need releasing on every way a trial can end, and a dead worker
cannot release anything. Checking the trial's number against the budget after creating it would not hold either:
retries and interrupted trials take new numbers.
"""

from __future__ import annotations

from typing import Any

from bench.store.lock import database_lock

BUDGET_LOCK = "budget"  # held while a worker counts the study's trials and asks for the next one


def finished(counts: dict[str, int]) -> int:
    """Trials that spent budget: completed or pruned."""
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)


def budget_spent(counts: dict[str, int], target: int) -> bool:
    """The search is over: `target` trials completed or pruned, or `target` failed (a broken setup stops too)."""
    return finished(counts) >= target or counts.get("FAIL", 0) >= target


def budget_open(counts: dict[str, int], target: int) -> bool:
    """A slot is free: finished and running trials together are under the budget, and failures are too."""
    return finished(counts) + counts.get("RUNNING", 0) < target and counts.get("FAIL", 0) < target


def state_counts(study: Any) -> dict[str, int]:
    """How many of the study's trials are in each state, read fresh from the storage."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def reserve_trial(study: Any, db_url: str, target: int, on_reserved: Any = None) -> Any | None:
    """The next trial, RUNNING and counted by every other worker, or None while no slot of the budget is free.

    `on_reserved(trial)` runs inside the lock (a first heartbeat): a worker that dies right after the reservation
    leaves a trial the heartbeat check can hand on, not one that holds its slot for ever.
    """
    with database_lock(db_url, BUDGET_LOCK):
        if not budget_open(state_counts(study), target):
            return None
        trial = study.ask()
        if on_reserved is not None:
            on_reserved(trial)
        return trial
