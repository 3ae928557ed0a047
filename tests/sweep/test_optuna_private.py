"""Pins what bench/sweep/optuna_private.py relies on in Optuna, and that no other module reaches into Optuna's
private attributes: an Optuna upgrade that changes them fails here, not in a sweep."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.sweep.optuna_private import (
    STUDY_NAMES_SQL,
    as_in_optimize,
    set_state_if,
    stale_trial_ids,
    stop_requested,
    study_id,
    trial_id,
)
from bench.sweep.queue import WorkerOptions, open_storage, open_study, study_names

REPO = Path(__file__).resolve().parents[2]
PRIVATE_MODULE = REPO / "bench" / "sweep" / "optuna_private.py"
OPTUNA_NAMES = ("trial", "frozen", "study", "storage", "stale", "dead", "first", "retry", "waiting")


def test_ids_claims_and_stale_trials_behave_as_bench_relies_on(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}", WorkerOptions(heartbeat_interval=1, grace_period=2))
    study = open_study("pinned", storage)
    other = open_study("other", storage)
    assert study_id(study) != study_id(other)
    for index in range(2):
        study.enqueue_trial({}, user_attrs={"cell": index})
    first, second = study.get_trials(deepcopy=False)
    assert trial_id(first) != trial_id(second) and storage.get_trial(trial_id(second)).number == 1
    assert trial_id(optuna.Trial(study, trial_id(first))) == trial_id(first)
    assert set_state_if(storage, trial_id(first), "WAITING", "RUNNING")
    assert not set_state_if(storage, trial_id(first), "WAITING", "RUNNING")  # a second worker does not get it
    assert storage.get_trial(trial_id(first)).state == TrialState.RUNNING
    assert storage.get_trial(trial_id(first)).datetime_start is not None
    storage.record_heartbeat(trial_id(first))
    assert stale_trial_ids(storage, study) == []  # it beats
    time.sleep(3.2)
    assert stale_trial_ids(storage, study) == [trial_id(first)]  # no beat for longer than the grace period
    assert stale_trial_ids(storage, other) == []
    assert set_state_if(storage, trial_id(first), "RUNNING", "FAIL")
    assert not set_state_if(storage, trial_id(first), "RUNNING", "FAIL")  # failed once, retried once
    assert storage.get_trial(trial_id(first)).state == TrialState.FAIL
    assert storage.get_trial(trial_id(first)).datetime_complete is not None
    assert "studies" in STUDY_NAMES_SQL and study_names(f"sqlite:///{tmp_path / 'p.db'}") == ["other", "pinned"]


def test_the_public_retry_callback_re_enqueues_a_failed_trial_with_its_user_attrs(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}", WorkerOptions())
    study = open_study("retry", storage)
    study.enqueue_trial({}, user_attrs={"cell": 7})
    (waiting,) = study.get_trials(deepcopy=False)
    assert set_state_if(storage, trial_id(waiting), "WAITING", "RUNNING")
    assert set_state_if(storage, trial_id(waiting), "RUNNING", "FAIL")
    callback = storage.get_heartbeat_stale_trial_callback()
    callback(study, storage.get_trial(trial_id(waiting)))
    retry = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert [t.user_attrs["cell"] for t in retry] == [7]
    assert retry[0].system_attrs["failed_trial"] == waiting.number  # bench's claim order reads this marker


def _private_accesses(path: Path) -> list[str]:
    """`name._attr` reads on names that hold Optuna objects in bench's code (trial, study, storage, ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id.lower().endswith(OPTUNA_NAMES)):
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("tree", ["bench", "tests", "benchmarks"])
def test_no_private_optuna_attribute_outside_the_one_module(tree: str) -> None:
    files = [path for path in sorted((REPO / tree).rglob("*.py")) if path != PRIVATE_MODULE]
    found = [hit for path in files for hit in _private_accesses(path)]
    assert found == [], "use bench/sweep/optuna_private.py for Optuna's private API:\n" + "\n".join(found)


def test_the_grep_finds_a_private_access(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(study, frozen, model):\n    return study._study_id, frozen._trial_id, model._x\n")
    assert [hit.split(": ")[1] for hit in _private_accesses(sample)] == ["study._study_id", "frozen._trial_id"]


def test_a_grid_sampler_may_stop_the_study_from_a_tell_run_as_in_optimize() -> None:
    """GridSampler.after_trial calls study.stop() on its last point: refused outside optimize, a flag inside."""
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1, 2]}, seed=0))
    for _ in range(2):
        trial = study.ask()
        trial.suggest_categorical("x", [1, 2])
        assert not stop_requested(study)
        with as_in_optimize(study):
            study.tell(trial, 0.0)
    assert stop_requested(study)
    last = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1]}, seed=0))
    trial = last.ask()
    trial.suggest_categorical("x", [1])
    with pytest.raises(RuntimeError, match="inside an objective"):
        last.tell(trial, 0.0)  # what bench's worker hit before: why the context is needed
