"""Every use of Optuna's private API and table layout, in one place, each pinned by tests/sweep/test_optuna_private.py
so that an Optuna upgrade fails a test instead of a sweep.

Why each one is needed (Optuna 5.1 has no public equivalent that is safe here):
- a trial's storage id (`Trial._trial_id`, `FrozenTrial._trial_id`): heartbeats, claims and retries are by id, and
  neither class exposes it publicly;
- the heartbeat check (`storage._get_stale_trial_ids`): the public `optuna.storages.fail_stale_trials(study)` reads
  the state outside a transaction and then writes FAIL, so on SQLite two workers can both fail (and both retry) one
  dead trial; bench fails each stale trial with one conditional UPDATE instead (`set_state_if`);
- the claim of a WAITING trial: `storage.set_trial_state_values(id, RUNNING)` has the same read-then-write race on
  SQLite, so the claim is one `UPDATE trials ... WHERE state = 'WAITING'` on Optuna's table;
- the names of the studies, read from Optuna's `studies` table without creating Optuna's schema (the public
  `get_all_study_names` creates every table in a new database);
- `tell` as if inside `study.optimize` (`Study._thread_local.in_optimize_loop`, `Study._stop_flag`): bench's worker
  loop asks and tells itself, and GridSampler.after_trial calls `study.stop()` once every grid point is drawn,
  which Optuna refuses (RuntimeError) outside `optimize`; the flag it sets ends bench's loop as it ends Optuna's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text

STUDY_NAMES_SQL = "SELECT study_name FROM studies ORDER BY study_name"  # Optuna's table of studies
STUDIES_TABLE = "studies"


def trial_id(trial: Any) -> int:
    """The storage id of an optuna.Trial or FrozenTrial (its number is per study, the id per database)."""
    return trial._trial_id


def study_id(study: Any) -> int:
    """The storage id of an optuna.Study."""
    return study._study_id


def stale_trial_ids(storage: Any, study: Any) -> list[int]:
    """The RUNNING trials of `study` whose last heartbeat is older than the storage's grace period."""
    return list(storage._get_stale_trial_ids(study._study_id))


def set_state_if(storage: Any, trial: int, old: str, new: str) -> bool:
    """Move one trial from state `old` to `new` in one UPDATE; True only for the worker that did it."""
    now = datetime.now()
    column = "datetime_start" if new == "RUNNING" else "datetime_complete"
    with storage.engine.begin() as connection:
        changed = connection.execute(
            text(f"UPDATE trials SET state = :new, {column} = :now WHERE trial_id = :id AND state = :old"),
            {"new": new, "old": old, "now": now, "id": trial},
        ).rowcount
    return changed == 1


@contextmanager
def as_in_optimize(study: Any) -> Iterator[None]:
    """Run a `study.tell` as Optuna's own optimize loop would, so a sampler may call `study.stop()` in it."""
    local = study._thread_local
    before = local.in_optimize_loop
    local.in_optimize_loop = True
    try:
        yield
    finally:
        local.in_optimize_loop = before


def stop_requested(study: Any) -> bool:
    """Whether a sampler asked the study to stop (GridSampler: every grid point has been drawn)."""
    return bool(study._stop_flag)
