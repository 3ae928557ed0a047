"""`--bundle auto` vs `off` on a real digits grid: the same cells, the same accuracies, bundle_size 4 vs none."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.grid import load_grid
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from bench.sweep.queue import WorkerOptions
from tests.support.rows import query

GRID = """
name: bundle
teacher: effnet-lite0
student: bottleneck
method: kd
dataset: digits
seeds: [0, 1]
epochs: 2
data: {image_size: 32, train_limit: 300, val_limit: 100, test_limit: 200}
hparams:
  batch_size: 32
  lr: [0.01, 0.003]
"""


@pytest.mark.slow  # the real teacher's features, probe and cost (about 35 s)
@pytest.mark.usefixtures("one_thread")
def test_bundled_grid_equals_separate_runs(tmp_path: Path) -> None:
    grid_path = tmp_path / "bundle.yaml"
    grid_path.write_text(GRID)
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    rows = {}
    for mode in ("off", "auto"):
        db = f"sqlite:///{tmp_path / f'{mode}.db'}"
        options = WorkerOptions(run_dir=tmp_path / f"runs-{mode}", bundle=mode)
        summary = run_grid(load_grid(grid_path), db, context, options=options)
        assert (summary.total, summary.done, summary.failed) == (5, 5, 0)
        rows[mode] = {row["spec_key"]: row for row in query(
            db, "SELECT spec_key, method, val_acc, test_acc, bundle_size, epoch_seconds, status FROM runs")}
    assert rows["auto"].keys() == rows["off"].keys()
    students = [key for key, row in rows["off"].items() if row["method"] == "kd"]
    assert len(students) == 4
    for key in students:
        alone, bundled = rows["off"][key], rows["auto"][key]
        assert (alone["bundle_size"], bundled["bundle_size"]) == (None, 4)  # None: the single-run loop
        assert bundled["status"] == "done" and bundled["epoch_seconds"] > 0
        assert bundled["val_acc"] == pytest.approx(alone["val_acc"], abs=1e-3)
        assert bundled["test_acc"] == pytest.approx(alone["test_acc"], abs=1e-3)
    assert max(rows["off"][key]["test_acc"] for key in students) > 0.5  # 10 classes: they learned
    assert len({rows["off"][key]["test_acc"] for key in students}) > 1  # four different models
    probe = next(key for key in rows["off"] if key not in students)
    assert rows["auto"][probe]["bundle_size"] is None  # the teacher's reference cell is no trained student

    one = tmp_path / "bundle-one.yaml"  # one kd cell of the grid: no companion waits, it still trains stacked
    one.write_text(GRID.replace("name: bundle", "name: bundle-one").replace("seeds: [0, 1]", "seeds: [0]")
                   .replace("lr: [0.01, 0.003]", "lr: 0.01"))
    db = f"sqlite:///{tmp_path / 'one.db'}"
    run_grid(load_grid(one), db, context, options=WorkerOptions(run_dir=tmp_path / "runs-one", bundle="auto"))
    (lone,) = query(db, "SELECT spec_key, val_acc, test_acc, bundle_size FROM runs WHERE method = 'kd'")
    among = rows["auto"][lone["spec_key"]]  # the same cell trained among four
    assert lone["bundle_size"] == 1 and among["bundle_size"] == 4
    assert (lone["val_acc"], lone["test_acc"]) == (among["val_acc"], among["test_acc"])  # bit for bit
