"""The worker's bundles (run_bundle faked: no training): companions claimed once, each cell told and stored on its
own, Ctrl-C interrupts every cell of a bundle, and the interrupted cells resume alone from their checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from bench.config.grid import GridModel, expand_grid
from bench.core.names import PROBE_METHOD
from bench.run.context import RunContext
from bench.store.results import Store
from bench.sweep.grid import run_grid
from bench.sweep.queue import WorkerOptions
from tests.sweep.test_loops import FakeRuns

GRID = {"name": "bundles", "teacher": "effnet-lite0", "student": "projection", "method": "scratch",
        "dataset": "digits", "epochs": 2, "seeds": [0, 1], "hparams": {"lr": [0.03, 0.01]}}


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    """run_spec and preflight faked as tests/sweep/test_loops.py fakes them (no teacher, no training)."""
    import bench.sweep.cell
    import bench.sweep.worker

    fake = FakeRuns()
    monkeypatch.setattr(bench.sweep.cell, "run_spec", fake)
    for module in (bench.sweep.worker, bench.sweep.cell):
        monkeypatch.setattr(module, "preflight", lambda _bench, cells: None)
    return fake


class FakeBundles:
    """run_bundle without training: each cell's record from FakeRuns, with its bundle's size; optionally Ctrl-C
    after writing every cell's checkpoint."""

    def __init__(self, runs: FakeRuns, interrupt: bool = False) -> None:
        self.runs, self.interrupt, self.sizes = runs, interrupt, []

    def __call__(self, specs, bench, study, hooks, evaluate_test=True):  # noqa: ANN001, ANN204
        self.sizes.append(len(specs))
        if self.interrupt:
            for hook in hooks:
                hook.checkpoint.directory.mkdir(parents=True, exist_ok=True)
                hook.checkpoint.path.write_bytes(b"epoch 1 of 2")
            raise KeyboardInterrupt
        return [replace(self.runs(spec, bench, study, hook.trial_number, hook.on_epoch, hook.checkpoint),
                        bundle_size=len(specs)) for spec, hook in zip(specs, hooks, strict=True)]


def grid_run(tmp_path: Path, db_url: str, bundle: str = "auto") -> object:
    grid = expand_grid(GridModel.model_validate(GRID), None)
    options = WorkerOptions(run_dir=tmp_path / "runs", grace_period=3600, heartbeat_interval=1800, bundle=bundle)
    return run_grid(grid, db_url, RunContext(device="cpu"), Console(stderr=True), options)


def test_a_worker_trains_compatible_cells_as_one_bundle(tmp_path: Path, db_url: str, fake_runs: FakeRuns,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run.run_bundle

    bundles = FakeBundles(fake_runs)
    monkeypatch.setattr(bench.run.run_bundle, "run_bundle", bundles)
    summary = grid_run(tmp_path, db_url)
    assert (summary.done, summary.failed) == (5, 0)  # type: ignore[attr-defined]
    assert bundles.sizes == [4]  # the four student cells, claimed once each, in one bundle
    assert [spec.method for spec, _, _ in fake_runs.calls] == [PROBE_METHOD, *["scratch"] * 4]
    rows = Store(db_url).runs()
    assert sorted(run.bundle_size or 0 for run in rows) == [0, 4, 4, 4, 4]
    import optuna

    trials = optuna.load_study(study_name="bundles", storage=db_url).get_trials()
    assert sorted(t.value for t in trials) == sorted(run.val_acc for run in rows)  # each told its own value
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_bundle_off_runs_every_cell_alone(tmp_path: Path, db_url: str, fake_runs: FakeRuns,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run.run_bundle

    bundles = FakeBundles(fake_runs)
    monkeypatch.setattr(bench.run.run_bundle, "run_bundle", bundles)
    summary = grid_run(tmp_path, db_url, bundle="off")
    assert (summary.done, bundles.sizes) == (5, [])  # type: ignore[attr-defined]


def test_ctrl_c_interrupts_every_cell_of_a_bundle_and_each_resumes_alone(
        tmp_path: Path, db_url: str, fake_runs: FakeRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    from optuna.trial import TrialState

    import bench.run.run_bundle

    monkeypatch.setattr(bench.run.run_bundle, "run_bundle", FakeBundles(fake_runs, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        grid_run(tmp_path, db_url)
    interrupted = Store(db_url).runs(status="interrupted")
    assert len(interrupted) == 4 and all("Ctrl-C" in run.error for run in interrupted)
    study = optuna.load_study(study_name="bundles", storage=db_url)
    for run in interrupted:
        states = [t.state for t in study.get_trials() if t.user_attrs.get("spec_key") == run.spec_key]
        assert states == [TrialState.FAIL, TrialState.WAITING]  # nothing left RUNNING
    bundles = FakeBundles(fake_runs)
    monkeypatch.setattr(bench.run.run_bundle, "run_bundle", bundles)
    before = len(fake_runs.calls)
    summary = grid_run(tmp_path, db_url)
    assert (summary.done, summary.failed) == (4, 0)  # type: ignore[attr-defined]
    assert bundles.sizes == [] and len(fake_runs.calls) - before == 4  # each resumed alone from its checkpoint
    assert sorted(run.status for run in Store(db_url).runs()) == ["done"] * 5


def test_a_lone_bundleable_cell_still_trains_in_the_stacked_model(tmp_path: Path, db_url: str, fake_runs: FakeRuns,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One seed, one lr: no companion waits, yet the cell goes through run_bundle (a bundle of 1), so its numbers
    are those it would have in any bundle."""
    import bench.run.run_bundle

    bundles = FakeBundles(fake_runs)
    monkeypatch.setattr(bench.run.run_bundle, "run_bundle", bundles)
    monkeypatch.setitem(GRID, "seeds", [0])
    monkeypatch.setitem(GRID, "hparams", {"lr": 0.03})
    summary = grid_run(tmp_path, db_url)
    assert (summary.done, bundles.sizes) == (2, [1])  # type: ignore[attr-defined]
    assert sorted(run.bundle_size or 0 for run in Store(db_url).runs()) == [0, 1]
