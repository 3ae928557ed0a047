"""A real grid on digits with the real pretrained teacher: rows, accuracies, idempotence, report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.config.grid import load_grid
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from tests.support.rows import query

GRID = """
name: e2e
teacher: effnet-lite0
student: [projection, bottleneck, resnet]
method: [scratch, kd, feature, combined]
dataset: digits
seeds: [0]
epochs: 4
data:
  image_size: 64
  student_image_size: 16
  train_limit: 600
  val_limit: 150
  test_limit: 300
hparams:
  batch_size: 32
  beta: 1.0  # FitNets' 100 (the default) swamps CE in 4 epochs at 16 px; this test checks the machinery
"""


@pytest.mark.slow
def test_digits_grid_end_to_end(tmp_path: Path) -> None:
    grid_path = tmp_path / "e2e.yaml"
    grid_path.write_text(GRID)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    context = RunContext(cache_dir=tmp_path / "cache", device="auto")
    summary = run_grid(load_grid(grid_path), db, context)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (13, 13, 0, 0)

    rows = query(db, "SELECT student, method, status, test_acc, teacher_acc, pct_of_teacher, "
                     "params, size_mb, student_kind, inference_size_mb, cache_hits, cache_misses "
                     "FROM runs ORDER BY id")
    assert len(rows) == 13 and all(row["status"] == "done" for row in rows)
    probe = rows[0]
    assert (probe["student"], probe["method"]) == ("linear-probe", "teacher-probe")
    assert probe["test_acc"] > 0.85  # pretrained features
    assert probe["cache_hits"] == 0 and probe["cache_misses"] == 3  # first run computed train/val/test features
    students = rows[1:]
    assert all(row["cache_hits"] == 3 and row["cache_misses"] == 0 for row in students)  # everyone else reused them
    for row in students:
        assert row["test_acc"] > 0.5, row  # 10 classes: chance is 0.1
        assert row["teacher_acc"] == pytest.approx(probe["test_acc"])
        assert row["pct_of_teacher"] == pytest.approx(100 * row["test_acc"] / probe["test_acc"])
        assert row["params"] > 0 and row["size_mb"] > 0
        if row["student_kind"] == "head":
            assert row["inference_size_mb"] > 10 * row["size_mb"]  # a head student still needs the teacher backbone
        else:
            assert row["inference_size_mb"] == pytest.approx(row["size_mb"])
    best_head = max(row["test_acc"] for row in students if row["student_kind"] == "head")
    assert best_head > 0.8

    (epochs,) = query(db, "SELECT count(*) AS n, min(seconds) AS fastest FROM run_epochs")
    assert epochs["n"] == 12 * 4 and epochs["fastest"] > 0
    terms = query(db, "SELECT e.loss_terms FROM run_epochs e JOIN runs r ON r.id = e.run_id "
                      "WHERE r.method = 'combined' LIMIT 1")
    assert set(__import__("json").loads(terms[0]["loss_terms"])) == {"ce", "kd", "feat"}

    import optuna

    study = optuna.load_study(study_name="e2e", storage=db)
    assert len(study.trials) == 13
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    again = run_grid(load_grid(grid_path), db, context)  # idempotent: nothing new
    assert (again.skipped, again.done) == (13, 0)
    engine = sa.create_engine(db)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 13
    assert len(optuna.load_study(study_name="e2e", storage=db).trials) == 13

    out = tmp_path / "reports"
    result = subprocess.run([sys.executable, "-m", "bench", "report", "--db", db, "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "## digits\n" in report and "- data digits: image_size=64, " in report
    assert report.count("| resnet | standalone |") == 8  # 4 settings, in the accuracy and the inference-cost table
    assert "feature cache: 36 hits, 3 misses over 13 runs" in report
    png = out / "acc_vs_size_digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_a_specs_result_does_not_depend_on_what_ran_before(tmp_path: Path) -> None:
    """Workers run cells in any order: a spec's result must depend on the spec alone."""
    import torch

    from bench.run.run_spec import run_spec
    from bench.run.workbench import Workbench

    grid_path = tmp_path / "g.yaml"
    grid_path.write_text("teacher: effnet-lite0\nstudent: [bottleneck, resnet]\nmethod: kd\ndataset: digits\n"
                         "epochs: 2\ndata: {image_size: 32, student_image_size: 8, train_limit: 200, val_limit: 50,"
                         " test_limit: 100}\n")
    bench = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    for spec in load_grid(grid_path).specs:
        first = run_spec(spec, bench, "a")
        torch.randn(1000)  # another cell's work in the same process
        second = run_spec(spec, bench, "b")
        assert [e.train_loss for e in second.epoch_records] == [e.train_loss for e in first.epoch_records]
        assert second.test_acc == first.test_acc
