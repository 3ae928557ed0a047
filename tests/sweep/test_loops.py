"""The study search and `bench worker` go through the one run-and-store step (run_spec faked: no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench.config.study import StudyModel
from bench.core.names import PROBE_METHOD, TRIALS_ATTR
from bench.core.spec import ExperimentSpec
from bench.run.context import RunContext
from bench.store.records import EpochRecord, RunRecord
from bench.store.results import Store
from bench.sweep.queue import WorkerOptions

STUDY = {
    "name": "loops", "teacher": "effnet-lite0", "student": "projection", "method": "scratch",
    "dataset": "digits", "epochs": 1, "sampler": "random", "trials": 2, "final": {"seeds": [1]},
    "pruner": {"name": "median", "n_startup_trials": 1},
    "search": {"lr": {"type": "float", "low": 1.0e-6, "high": 0.1, "log": True}},
    "enqueue": [{"lr": 0.03}, {"lr": 1.0e-5}],
}


class FakeRuns:
    """run_spec without training: one epoch whose val_acc is high for a large lr; leaves a checkpoint file."""

    def __init__(self) -> None:
        self.calls: list[tuple[ExperimentSpec, str, bool]] = []
        self.checkpoints: list[Path] = []

    def __call__(self, spec: ExperimentSpec, _bench: object, study: str, number: int | None, on_epoch=None,  # noqa: ANN001
                 checkpoint=None, evaluate_test: bool = True, keep=None) -> RunRecord:  # noqa: ANN001
        self.calls.append((spec, study, evaluate_test))
        checkpoint.directory.mkdir(parents=True, exist_ok=True)
        checkpoint.path.write_bytes(b"a checkpoint")
        self.checkpoints.append(checkpoint.directory)
        val = 0.9 if float(spec.hparams_dict.get("lr", 1.0)) > 1e-3 else 0.1
        epoch = EpochRecord(0, 1.0, {"ce": 1.0}, val, 0.1)
        if on_epoch is not None:
            on_epoch(epoch)
        return RunRecord(spec_key=spec.key, study=study, teacher=spec.teacher, student=spec.student,
                         student_kind="standalone", method=spec.method, dataset=spec.dataset, seed=spec.seed,
                         epochs=spec.epochs, hparams=spec.hparams_dict, data_config=spec.data_dict, status="done",
                         val_acc=val, test_acc=0.8 if evaluate_test else None, size_mb=0.1, params=10,
                         epoch_records=(epoch,), trial_number=number)


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    import bench.sweep.cell
    import bench.sweep.search
    import bench.sweep.worker

    fake = FakeRuns()
    monkeypatch.setattr(bench.sweep.cell, "run_spec", fake)
    fake.preflights = []  # type: ignore[attr-defined]
    for module in (bench.sweep.search, bench.sweep.worker, bench.sweep.cell):  # grid imports it from cell on use
        monkeypatch.setattr(module, "preflight", lambda _bench, cells: fake.preflights.append(list(cells)))
    return fake


def test_a_study_searches_on_val_then_re_runs_the_best_on_test_through_one_store_step(
        tmp_path: Path, db_url: str, fake_runs: FakeRuns) -> None:
    from bench.sweep.search import run_study

    options = WorkerOptions(run_dir=tmp_path / "runs", bundle="off")  # run_spec is faked: the single-run loop
    summary = run_study(StudyModel.model_validate(STUDY), db_url, RunContext(device="cpu"), options,
                        Console(stderr=True))
    assert summary.states == {"COMPLETE": 1, "PRUNED": 1}
    probes = fake_runs.preflights[0]  # type: ignore[attr-defined]
    assert [(s.teacher, s.dataset, s.method) for s in probes] == [("effnet-lite0", "digits", PROBE_METHOD)]
    search = [(study, test) for _, study, test in fake_runs.calls if study == "loops"]
    assert search == [("loops", False), ("loops", False)]  # the search never evaluates the test split
    finals = [(spec.method, spec.seed, test) for spec, study, test in fake_runs.calls if study == "loops/final"]
    assert finals == [(PROBE_METHOD, 0, True), ("scratch", 1, True)]
    rows = {(run.study, run.status) for run in Store(db_url).runs()}
    assert rows == {("loops", "done"), ("loops", "pruned"), ("loops/final", "done")}
    (pruned,) = Store(db_url).runs(status="pruned")
    assert pruned.val_acc == 0.1 and len(pruned.epoch_records) == 1 and pruned.error.startswith("val_acc 0.1000")
    assert not any(path.exists() for path in fake_runs.checkpoints)  # stored and pruned runs leave none
    assert summary.final_test_acc == [0.8]


def test_a_worker_joins_a_study_from_the_database_alone(tmp_path: Path, db_url: str, fake_runs: FakeRuns) -> None:
    import optuna

    from bench.sweep.search import run_study
    from bench.sweep.worker import run_worker

    options = WorkerOptions(run_dir=tmp_path / "runs", bundle="off")  # run_spec is faked: the single-run loop
    run_study(StudyModel.model_validate(STUDY), db_url, RunContext(device="cpu"), options, Console(stderr=True))
    optuna.load_study(study_name="loops", storage=db_url).set_user_attr(TRIALS_ATTR, 3)
    before = len(fake_runs.calls)
    joined = run_worker("loops", db_url, RunContext(device="cpu"), options, Console(stderr=True))
    assert (joined.kind, joined.counts.done, joined.counts.failed) == ("study", 1, 0)
    assert [(study, test) for _, study, test in fake_runs.calls[before:]] == [("loops", False)]
    assert fake_runs.preflights[-1][0].method == PROBE_METHOD  # type: ignore[attr-defined]


def test_ctrl_c_marks_the_cell_interrupted_and_the_next_run_resumes_it_at_once(
        tmp_path: Path, db_url: str, fake_runs: FakeRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    from optuna.trial import TrialState

    import bench.sweep.cell
    from bench.config.grid import GridModel, expand_grid
    from bench.sweep.grid import run_grid

    grid = expand_grid(GridModel.model_validate({**{k: STUDY[k] for k in ("teacher", "student", "method", "dataset",
                                                                          "epochs")}, "name": "ctrl-c"}), None)
    options = WorkerOptions(run_dir=tmp_path / "runs", grace_period=3600, heartbeat_interval=1800,
                           bundle="off")  # run_spec is faked: the single-run loop

    def interrupted(spec: ExperimentSpec, *args, checkpoint=None, **kwargs) -> RunRecord:  # noqa: ANN001, ANN002, ANN003
        if spec.method != PROBE_METHOD:
            checkpoint.directory.mkdir(parents=True, exist_ok=True)
            checkpoint.path.write_bytes(b"epoch 1 of 2")
            raise KeyboardInterrupt
        return fake_runs(spec, *args, checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(bench.sweep.cell, "run_spec", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, db_url, RunContext(device="cpu"), Console(stderr=True), options)
    (row,) = Store(db_url).runs(status="interrupted")
    assert row.method == "scratch" and "Ctrl-C" in row.error
    study = optuna.load_study(study_name="ctrl-c", storage=db_url)
    states = [trial.state for trial in study.get_trials() if trial.user_attrs.get("spec_key") == row.spec_key]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # nothing is left RUNNING with a live heartbeat
    checkpoints = list((tmp_path / "runs").rglob("*"))
    assert any(path.is_file() for path in checkpoints)  # the checkpoint is kept for the resume

    monkeypatch.setattr(bench.sweep.cell, "run_spec", fake_runs)
    summary = run_grid(grid, db_url, RunContext(device="cpu"), Console(stderr=True), options)
    assert (summary.done, summary.failed) == (1, 0)  # resumed at once: no 3600 s grace period to wait out
    assert [run.status for run in Store(db_url).runs() if run.spec_key == row.spec_key] == ["done"]


def test_the_study_bar_names_the_best_value_and_the_pruned_trials() -> None:
    import optuna

    from bench.sweep.worker import study_line

    study = optuna.create_study(study_name="bar", direction="maximize")
    assert study_line(study) == "study bar: no trial done yet, 0 pruned, 0 failed"
    for value in (0.25, 0.75, 0.5):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    assert study_line(study) == "study bar: best 0.7500, 1 pruned, 0 failed"
    pareto = optuna.create_study(study_name="two", directions=["maximize", "minimize"])
    for values in ((0.5, 1.0), (0.7, 2.0), (0.4, 3.0)):
        pareto.add_trial(optuna.trial.create_trial(values=list(values)))
    assert study_line(pareto) == "study two: Pareto front 2, 0 pruned, 0 failed"


def test_a_finished_grids_re_run_loads_no_teacher_no_migrations_and_no_optuna(
        tmp_path: Path, db_url: str, fake_runs: FakeRuns) -> None:
    """Re-running a finished grid reads its done keys and its study's attributes and stops: no Workbench, no
    Alembic, no Optuna, no scipy (each seconds of CPU per process). A changed source file is not 'finished'."""
    import subprocess
    import sys

    from bench.config.grid import load_grid
    from bench.sweep.grid import grid_cells, is_finished, run_grid, stored_done_keys
    from tests.support.paths import REPO

    path = tmp_path / "g.yaml"
    path.write_text("teacher: effnet-lite0\nstudent: projection\nmethod: scratch\ndataset: digits\nepochs: 1\n")
    options = WorkerOptions(run_dir=tmp_path / "runs", bundle="off")  # run_spec is faked: the single-run loop
    first = run_grid(load_grid(path), db_url, RunContext(device="cpu"), Console(stderr=True), options)
    assert (first.total, first.done) == (2, 2)
    heavy = ("optuna", "alembic", "scipy", "timm", "torchvision", "pandas", "bench.run.workbench")
    code = ("import runpy, sys\nsys.argv = ['bench', 'run', sys.argv[1], '--db', sys.argv[2], '--run-dir', sys.argv[3]]"
            "\ntry:\n    runpy.run_module('bench', run_name='__main__')\nexcept SystemExit as end:\n    code = end.code"
            f"\nprint('LOADED', sorted(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(path), db_url, str(tmp_path / "runs")], cwd=tmp_path,
                            capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
                            timeout=600)  # a safety net: the re-run does one query
    assert "2 cells, 2 already done, 0 run now, 0 failed" in result.stdout, result.stderr
    assert "LOADED []" in result.stdout, result.stdout
    moved = tmp_path / "elsewhere.yaml"
    moved.write_text(path.read_text())  # the same cells from another file: another study, not yet stored
    grid = load_grid(moved)
    assert not is_finished(grid, grid_cells(grid), stored_done_keys(db_url), db_url)
    assert is_finished(load_grid(path), grid_cells(grid), stored_done_keys(db_url), db_url)
