"""A run is done only if its numbers are finite and it was stored: NaN stops a run, storage errors never vanish."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from rich.console import Console

from bench.core.registries import METHODS, STUDENTS
from bench.core.spec import ExperimentSpec
from bench.methods.base import MethodContext
from bench.run.train import NonFiniteError, check_finite, train_student
from bench.store.results import StorageError, Store
from bench.students.base import StudentContext
from bench.sweep.cell import cell_progress
from bench.sweep.context import Sweep
from bench.sweep.queue import WorkerOptions, claim_waiting, open_storage, open_study
from bench.sweep.worker import run_cell
from tests.support.paths import REPO
from tests.support.records import record
from tests.support.train_data import HPARAMS, tiny_data

BATCHES_PER_EPOCH = 6  # tiny_data: 90 train rows in batches of 16



def train(epochs: int = 5, student_name: str = "projection", **changes: object):  # noqa: ANN201
    hparams = {**HPARAMS, **changes.pop("hparams", {})}
    torch.manual_seed(0)
    student = changes.pop("student", None) or STUDENTS.entry(student_name).obj(StudentContext(3, 8, 8), hparams)
    method = METHODS.get("scratch")(MethodContext(3, 8, student.embed_dim), hparams)
    return train_student(student, method, tiny_data(), hparams, epochs, 0, torch.device("cpu"), **changes)


class NanOnCall(torch.nn.Module):
    """A projection student whose n-th training forward (1-based) gives NaN logits."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.inner = STUDENTS.entry("projection").obj(StudentContext(3, 8, 8), HPARAMS)
        self.embed_dim, self.n, self.calls = self.inner.embed_dim, n, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                out = {**out, "logits": out["logits"] * float("nan")}
        return out


def test_train_acc_is_recorded_per_epoch_and_rises_on_an_easy_task(one_thread: None) -> None:
    result = train(hparams={"lr": 1e-2})
    accuracies = [epoch.train_acc for epoch in result.epochs]
    assert all(acc is not None and 0.0 <= acc <= 1.0 for acc in accuracies), accuracies
    assert accuracies[-1] > accuracies[0]


def test_the_first_non_finite_batch_stops_the_run_and_names_epoch_and_batch(one_thread: None) -> None:
    seen = []
    with pytest.raises(NonFiniteError, match=r"^non-finite loss at epoch 2, batch 3 \(ce=nan, total=nan\)$"):
        train(student=NanOnCall(BATCHES_PER_EPOCH + 3), on_epoch=seen.append)
    assert [epoch.epoch for epoch in seen] == [0]  # epoch 1 finished; nothing after the NaN batch
    with pytest.raises(NonFiniteError, match=r"^non-finite loss at epoch 1, batch \d+ "):
        train(hparams={"lr": 1.0e8})  # a real divergence


def test_a_non_finite_val_score_stops_the_run(one_thread: None) -> None:
    scores = iter([0.5, float("nan"), 0.7])
    with pytest.raises(NonFiniteError, match=r"^non-finite val_acc at epoch 2: nan$"):
        train(val_score=lambda: next(scores))


def test_check_finite_names_every_bad_field() -> None:
    good = record()
    assert check_finite(good) is good
    bad = record(val_acc=float("nan"), epoch_records=(replace(good.epoch_records[0], train_acc=math.inf),))
    with pytest.raises(NonFiniteError, match=r"non-finite val_acc, epoch_records\[0\]\.train_acc in the finished"):
        check_finite(bad)


def claimed_cell(db_url: str, tmp_path: Path):  # noqa: ANN201
    """One grid cell enqueued in a fresh study and claimed by this process: (study, storage, trial, options)."""
    options = WorkerOptions(run_dir=tmp_path / "runs", heartbeat_interval=1, grace_period=60)
    storage = open_storage(db_url, options)
    study = open_study("cells", storage)
    spec = ExperimentSpec.create(teacher="t", student="projection", method="scratch", dataset="digits",
                                 epochs=2, seed=0)
    study.enqueue_trial({}, user_attrs={"spec_key": spec.key, "spec": spec.to_dict()})
    return study, storage, claim_waiting(study, storage), options, spec


def run_one(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: object,
            store: Store | None = None) -> tuple[str, object, Store]:
    """run_cell on a claimed cell whose run_spec returns `result` (or raises it); returns outcome, trial, store."""
    import bench.sweep.cell

    def fake_run_spec(spec, _bench, study, number, **_kwargs):  # noqa: ANN001, ANN202
        if isinstance(result, Exception):
            raise result
        return replace(result, spec_key=spec.key, study=study, trial_number=number)

    monkeypatch.setattr(bench.sweep.cell, "run_spec", fake_run_spec)
    study, storage, trial, options, _ = claimed_cell(db_url, tmp_path)
    store = store or Store(db_url)
    console = Console(stderr=True)
    with cell_progress(console) as progress:
        outcome = run_cell(Sweep(study, storage, None, store, options, console), trial, progress)
    return outcome, study.trials[0], store


def test_a_non_finite_result_is_a_failed_row_and_a_failed_trial(db_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`epochs: [-3]` trains nothing: val_acc NaN was stored as done and told to Optuna as a value."""
    outcome, trial, store = run_one(db_url, tmp_path, monkeypatch, record(val_acc=float("nan"), epoch_records=()))
    assert outcome == "failed" and trial.state.name == "FAIL"
    (row,) = store.runs()
    assert row.status == "failed" and row.error.startswith("NonFiniteError: non-finite val_acc")


def test_a_done_row_that_cannot_be_stored_fails_the_cell_with_the_storage_error(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a rejected row crashed outside the cell's try and left the trial RUNNING."""
    real_write = Store._write

    def refuse_done(self: Store, run) -> bool:  # noqa: ANN001
        if run.status == "done":
            raise sa.exc.DataError("INSERT", {}, Exception("invalid input syntax for type json"))
        return real_write(self, run)

    monkeypatch.setattr(Store, "_write", refuse_done)
    outcome, trial, store = run_one(db_url, tmp_path, monkeypatch, record())
    assert outcome == "failed" and trial.state.name == "FAIL"
    (row,) = store.runs()
    assert row.status == "failed" and row.error.startswith("StorageError: run ") and "invalid input" in row.error


def test_when_not_even_the_failed_row_can_be_stored_the_process_stops(db_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_all(self: Store, run) -> bool:  # noqa: ANN001
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Store, "_write", refuse_all)
    with pytest.raises(StorageError, match="server closed the connection"):
        run_one(db_url, tmp_path, monkeypatch, record())
    import optuna

    assert optuna.load_study(study_name="cells", storage=db_url).trials[0].state.name == "FAIL"  # not RUNNING


GRID = """
name: diverge
teacher: effnet-lite0
student: projection
method: scratch
dataset: digits
epochs: 3
data: {image_size: 32, student_image_size: 8, train_limit: 300, val_limit: 60, test_limit: 60}
hparams: {batch_size: 32, lr: [1.0e-2, 1.0e+8]}
"""


@pytest.mark.slow
def test_a_diverging_cell_is_a_failed_row_and_the_grid_goes_on(tmp_path: Path) -> None:
    """lr 1e8 printed a test_acc, said '0 failed', stored no row and left its trial COMPLETE."""
    import optuna

    (tmp_path / "grid.yaml").write_text(GRID)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(tmp_path / "grid.yaml"), "--db", db, "--device", "cpu",
         "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                                     "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr
    assert "3 cells, 0 already done, 2 run now, 1 failed" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr  # a diverged run is an outcome, not a bug
    engine = sa.create_engine(db)
    with engine.connect() as connection:
        runs = {row[0]: row[1:] for row in connection.execute(sa.text(
            "SELECT json_extract(hparams, '$.lr'), status, error, id FROM runs WHERE method = 'scratch'"))}
        assert runs[1.0e8][0] == "failed" and "NonFiniteError: non-finite loss at epoch " in runs[1.0e8][1]
        assert ", batch " in runs[1.0e8][1]
        assert runs[1.0e-2][0] == "done"
        curve = [row[0] for row in connection.execute(sa.text(
            "SELECT train_acc FROM run_epochs WHERE run_id = :id ORDER BY epoch"), {"id": runs[1.0e-2][2]})]
    engine.dispose()
    assert len(curve) == 3 and all(0.0 <= acc <= 1.0 for acc in curve) and curve[-1] > curve[0]
    trials = optuna.load_study(study_name="diverge", storage=db).trials
    states = {t.user_attrs["spec"]["hparams"].get("lr"): t.state.name for t in trials}
    assert states == {None: "COMPLETE", 1.0e-2: "COMPLETE", 1.0e8: "FAIL"}


@pytest.mark.slow
def test_a_diverging_study_trial_fails_with_a_row_and_the_study_goes_on(tmp_path: Path, db_url: str,
                                                                       one_thread: None) -> None:
    """A diverged trial was COMPLETE with a value and no row; now it is FAIL with a failed row."""
    import optuna
    import yaml

    from bench.config.study import load_study_file
    from bench.run.context import RunContext
    from bench.sweep.search import run_study

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "diverge", "teacher": "effnet-lite0", "student": "projection", "method": "scratch",
        "dataset": "digits", "epochs": 2, "trials": 2, "sampler": "random", "final": {"seeds": [1]},
        "data": {"image_size": 32, "student_image_size": 8, "train_limit": 300, "val_limit": 60, "test_limit": 60},
        "hparams": {"batch_size": 32}, "search": {"lr": {"type": "float", "low": 1.0e-3, "high": 1.0e+9, "log": True}},
        "enqueue": [{"lr": 1.0e8}, {"lr": 1.0e-2}, {"lr": 2.0e-2}],
    }))
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    summary = run_study(load_study_file(path), db_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    assert summary.states == {"COMPLETE": 2, "FAIL": 1}
    trials = optuna.load_study(study_name="diverge", storage=db_url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].values is None and all(math.isfinite(t.value) for t in trials[1:])
    store = Store(db_url)
    rows = {run.trial_number: run for run in store.runs(study="diverge")}
    assert rows[0].status == "failed" and rows[0].error.startswith("NonFiniteError: non-finite loss at epoch 1, ")
    assert rows[1].status == rows[2].status == "done"
    assert summary.best[0][2]["lr"] in (1.0e-2, 2.0e-2) and len(summary.final_test_acc) == 1
