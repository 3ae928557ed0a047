"""Issue 14: every done run keeps its trained student (safetensors, sha256 in its row); `bench eval` reproduces it."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.names import PROBE_METHOD
from bench.run.kept import STUDENT, Kept
from bench.store.results import StorageError, Store
from tests.support.fakes import registered
from tests.support.records import record

GRID = """
name: keep
teacher: fake-image-text
student: [projection, resnet]
method: [scratch]
dataset: digits
seeds: [0, 1]
epochs: 2
data:
  image_size: 12
  student_image_size: 8
  train_limit: 120
  val_limit: 60
  test_limit: 60
hparams:
  batch_size: 32
"""


def bench_cli(*argv: str) -> tuple[int, str]:
    """Run `bench ARGV` in this process (the fake teacher is registered here); exit code and all output."""
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.output


def run_grid(tmp_path: Path, *options: str) -> tuple[str, Path]:
    """The tiny grid through `bench run` into tmp_path/results.db; returns the URL and the default artifact dir."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    code, output = bench_cli("run", str(grid), "--db", db, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                             "--run-dir", str(tmp_path / "runs"), *options)
    assert code == 0, output
    return db, tmp_path / "artifacts"


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.is_file()) if directory.exists() else []


@pytest.fixture
def fake_teacher():  # noqa: ANN201
    with registered() as name:
        yield name


@pytest.mark.slow
def test_every_done_run_keeps_an_artifact_that_bench_eval_reproduces(tmp_path: Path, fake_teacher: str,
                                                                     one_thread: None) -> None:
    db, directory = run_grid(tmp_path)
    runs = Store(db).runs()
    assert len(runs) == 5 and all(run.status == "done" for run in runs)  # the probe and 2 students x 2 seeds
    assert sorted(Path(run.artifact_path) for run in runs) == files(directory)
    for run in runs:
        assert hashlib.sha256(Path(run.artifact_path).read_bytes()).hexdigest() == run.artifact_sha256
    import optuna

    trials = optuna.load_study(study_name="keep", storage=db).trials
    assert all(any(key.startswith("artifacts:") for key in t.system_attrs) for t in trials)  # dashboard sees them
    by_kind = {(run.student_kind, run.student): run for run in runs}
    for run in (by_kind["standalone", "resnet"], by_kind["head", "projection"], by_kind["head", "linear-probe"]):
        code, output = bench_cli("eval", run.spec_key[:10], "--db", db, "--cache-dir", str(tmp_path / "cache"),
                                 "--device", "cpu")
        assert code == 0, output
        assert f"stored {run.test_acc:.6f}, recomputed {run.test_acc:.6f}" in output
    code, output = bench_cli("eval", runs[1].spec_key[:10], "--split", "val", "--db", db, "--cache-dir",
                             str(tmp_path / "cache"), "--device", "cpu")
    assert code == 0 and f"stored {runs[1].val_acc:.6f}" in output, output

    changed, missing = Path(runs[1].artifact_path), Path(runs[2].artifact_path)
    changed.write_bytes(changed.read_bytes()[:-1] + b" ")
    missing.unlink()
    for run, word in ((runs[1], "has changed"), (runs[2], "is missing")):
        code, output = bench_cli("eval", run.spec_key[:10], "--db", db, "--cache-dir", str(tmp_path / "cache"))
        assert code == 2 and output.count("\n") == 1 and word in output and "re-run the cell" in output, output


@pytest.mark.slow
def test_keep_best_keeps_the_best_val_run_of_each_setting_and_keep_none_keeps_nothing(
        tmp_path: Path, fake_teacher: str, one_thread: None) -> None:
    db, directory = run_grid(tmp_path / "best", "--keep", "best")
    runs = Store(db).runs()
    kept = [run for run in runs if run.artifact_path is not None]
    assert sorted(Path(run.artifact_path) for run in kept) == files(directory)
    assert sorted((run.student, run.method) for run in kept) == [("linear-probe", "teacher-probe"),
                                                                 ("projection", "scratch"), ("resnet", "scratch")]
    for run in kept:
        seeds = [other.val_acc for other in runs if (other.student, other.method) == (run.student, run.method)]
        assert run.val_acc == max(seeds)
        assert all(other.artifact_sha256 is None for other in runs
                   if other.student == run.student and other.spec_key != run.spec_key)

    db, directory = run_grid(tmp_path / "none", "--keep", "none")
    assert files(directory) == []
    assert all(run.artifact_path is None and run.artifact_sha256 is None for run in Store(db).runs())


def test_keep_rejects_an_unknown_choice_in_one_line(tmp_path: Path) -> None:
    code, output = bench_cli("run", "missing.yaml", "--keep", "some", "--db", f"sqlite:///{tmp_path / 'r.db'}")
    assert code == 2 and "--keep 'some'" in output and output.count("\n") == 1, output


class BrokenStore(Store):
    """Stores failed rows, but not a done one (after checking its artifact was written before the row)."""

    def save_run(self, run):  # noqa: ANN001, ANN201
        if run.status == "done":
            assert Path(run.artifact_path).is_file()
            raise StorageError(f"run {run.spec_key} not stored: disk full")
        return super().save_run(run)


@pytest.mark.parametrize("case", ["non-finite", "not stored"])
def test_a_failed_run_and_a_row_that_could_not_be_stored_leave_no_file(case: str, db_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.sweep.cell
    from bench.sweep.cell import cell_progress
    from bench.sweep.context import Sweep
    from bench.sweep.worker import run_cell
    from tests.run.test_outcomes import claimed_cell

    result = record(val_acc=float("nan"), epoch_records=()) if case == "non-finite" else record()

    def fake_run_spec(spec, _bench, study, number, keep=None, **_kwargs):  # noqa: ANN001, ANN202
        keep(Kept(STUDENT, {"student.w": torch.ones(2)}, {"spec": spec.canonical_json()}))
        return replace(result, spec_key=spec.key, study=study, trial_number=number)

    monkeypatch.setattr(bench.sweep.cell, "run_spec", fake_run_spec)
    study, storage, trial, options, _ = claimed_cell(db_url, tmp_path)
    store = BrokenStore(db_url) if case == "not stored" else Store(db_url)
    console = Console(stderr=True)
    with cell_progress(console) as progress:
        outcome = run_cell(Sweep(study, storage, None, store, options, console), trial, progress)
    assert outcome == "failed"
    (row,) = Store(db_url).runs()
    assert row.status == "failed" and row.artifact_path is None
    directory = tmp_path / "artifacts"
    assert not directory.exists() or list(directory.rglob("*")) == []  # no file, no staging left behind


@pytest.mark.slow
def test_bench_export_writes_runnable_files_from_stored_runs(tmp_path: Path, fake_teacher: str,
                                                             one_thread: None) -> None:
    """`bench export` of a head and a standalone run (and --best --where) gives ONNX files onnxruntime runs on
    the run's real test images, matching the stored run's own predictions; a reference run and no --out refuse."""
    import numpy as np
    import onnxruntime

    from bench.artifacts.store import evaluate_run, find_run, load_run
    from bench.deploy.model import images_to_input

    db, _ = run_grid(tmp_path)
    runs = {(run.student_kind, run.student, run.seed): run for run in Store(db).runs()}
    head, standalone = runs[("head", "projection", 0)], runs[("standalone", "resnet", 1)]
    for run in (head, standalone):
        out = tmp_path / f"{run.student}.onnx"
        code, output = bench_cli("export", run.spec_key[:12], "--format", "onnx", "--out", str(out), "--db", db)
        assert code == 0, output
        loaded = load_run(db, run.spec_key)
        images = loaded.data.test.images
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits = session.run(None, {session.get_inputs()[0].name: images_to_input(images).numpy()})[0]
        accuracy = float((logits.argmax(1) == np.asarray(loaded.data.test.labels)).mean())
        assert accuracy == pytest.approx(evaluate_run(loaded, "test"), abs=1.0 / len(images))  # one flip at most
        assert accuracy == pytest.approx(run.test_acc, abs=1.0 / len(images))
    best = tmp_path / "best.pt"
    code, output = bench_cli("export", "--best", "--where", "student = 'resnet'", "--format", "torchscript",
                             "--out", str(best), "--db", db)
    top = max((r for r in runs.values() if r.student == "resnet"), key=lambda r: r.test_acc)
    assert code == 0, output
    chosen = output.split("(run ", 1)[1].split(",", 1)[0]  # "wrote FILE (run ID, torchscript; ...)"
    assert find_run(db, chosen).spec_key == top.spec_key
    assert torch.jit.load(str(best))(images_to_input(images[:4])).shape[0] == 4
    reference = next(r for r in Store(db).runs() if r.method == PROBE_METHOD)
    code, output = bench_cli("export", reference.spec_key[:12], "--out", str(tmp_path / "r.onnx"), "--db", db)
    assert code == 2 and "reference cell" in output and not (tmp_path / "r.onnx").exists()
    code, output = bench_cli("export", head.spec_key[:12], "--db", db)
    assert code == 2 and "--out FILE is required" in output
