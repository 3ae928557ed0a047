"""End-to-end grids on official-layout fixtures: Tiny ImageNet (CLI, --skip-bad) and COCO captions retrieval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.config.grid import load_grid
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from tests.support.dataset_fixtures import corrupt_jpeg, write_coco, write_tiny_imagenet
from tests.support.fakes import registered
from tests.support.limits import SAFETY_NET_S, bench_env
from tests.support.paths import REPO
from tests.support.rows import only, query

TINY_GRID = """
name: tiny
teacher: effnet-lite0
student: projection
method: kd
dataset: tiny-imagenet
epochs: 8
data:
  image_size: 64
  val_fraction: 0.2
hparams:
  batch_size: 16
"""

COCO_GRID = """
name: coco
teacher: fake-image-text
student: [projection, bottleneck]
method: [joint-cosine, joint-contrastive]
dataset: coco-captions
epochs: 15
data:
  image_size: 32
  decode_size: 32
  val_fraction: 0.2
hparams:
  batch_size: 16
  lr: 0.01
"""


def bench_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, bounded by its grid's work; the wall-clock limit is only a net against a hang (a
    hard 300 s failed on a loaded box where the teacher ran at 2-3 images/s)."""
    env = bench_env()
    env.pop("BENCH_DATA", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=SAFETY_NET_S, cwd=REPO, env=env)


@pytest.mark.slow
def test_tiny_imagenet_grid_through_the_cli(tmp_path: Path) -> None:
    root = write_tiny_imagenet(tmp_path / "data", num_classes=6, per_class=10, val_per_class=4)
    bad = root / "train" / "n01440002" / "images" / "n01440002_3.JPEG"
    corrupt_jpeg(bad)
    grid = tmp_path / "tiny.yaml"
    grid.write_text(TINY_GRID)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    common = ["run", str(grid), "--db", db, "--data-root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "c")]
    failed = bench_cli(*common)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1, failed.stderr
    assert f"cannot decode image {bad}" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "results.db").exists() or only(db, "SELECT count(*) FROM runs") == 0

    done = bench_cli(*common, "--skip-bad")
    assert done.returncode == 0, done.stderr
    rows = query(db, "SELECT method, test_acc, test_top5, teacher_acc, pct_of_teacher, skipped_images, "
                     "split_sizes, mean_recall FROM runs ORDER BY id")
    assert [row["method"] for row in rows] == ["teacher-probe", "kd"]
    for row in rows:
        test_acc, top5 = row["test_acc"], row["test_top5"]
        assert test_acc > 0.5 and top5 >= test_acc and top5 > 0.8, row  # chance: 1/6, 5/6
        assert row["pct_of_teacher"] == pytest.approx(100 * test_acc / row["teacher_acc"])
        assert row["skipped_images"] == 1 and row["mean_recall"] is None
        assert json.loads(row["split_sizes"]) == {"train": 47, "val": 12, "test": 24, "split_seed": 0,
                                                  "val_fraction": 0.2}


@pytest.mark.slow
def test_coco_retrieval_grid_with_an_image_text_teacher(tmp_path: Path) -> None:
    write_coco(tmp_path / "data", n_train=60, n_val=30)
    grid = tmp_path / "coco.yaml"
    grid.write_text(COCO_GRID)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    with registered():
        summary = run_grid(load_grid(grid), db, RunContext(tmp_path / "c", tmp_path / "data", "cpu"))
    assert (summary.total, summary.done, summary.failed) == (5, 5, 0)
    columns = "student, method, test_acc, val_acc, i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5, t2i_r10, mean_recall, " \
              "pct_of_teacher, split_sizes, teacher_reference, inference_params, params, method_params"
    rows = query(db, f"SELECT {columns} FROM runs ORDER BY id")
    teacher = rows[0]
    assert teacher["method"] == "teacher-probe" and teacher["pct_of_teacher"] == 100.0 and teacher["params"] == 0
    # 30 test images in 6 colours: chance R@5 is 1/6; the teacher finds the colour, not the exact image
    assert teacher["t2i_r5"] > 0.7 and teacher["t2i_r10"] > 0.9 and teacher["i2t_r10"] > 0.8, teacher
    for row in rows:
        recalls = [row[f"{way}_r{k}"] for way in ("i2t", "t2i") for k in (1, 5, 10)]
        assert row["test_acc"] is None and row["val_acc"] is not None and all(0.0 <= r <= 1.0 for r in recalls)
        assert row["mean_recall"] == pytest.approx(sum(recalls) / 6)
        assert json.loads(row["split_sizes"]) == {"train": 48, "val": 12, "test": 30, "split_seed": 0,
                                                  "val_fraction": 0.2}
        assert row["teacher_reference"] == "teacher-joint-space"
    students = rows[1:]
    assert {(r["student"], r["method"]) for r in students} == {(s, m) for s in ("projection", "bottleneck")
                                                               for m in ("joint-cosine", "joint-contrastive")}
    for row in students:
        assert row["t2i_r5"] > 0.5, row  # t2i R@5 well above chance (0.17)
        assert row["pct_of_teacher"] == pytest.approx(100 * row["mean_recall"] / teacher["mean_recall"])
        assert row["inference_params"] > row["params"] + row["method_params"]
    assert max(row["pct_of_teacher"] for row in students) > 70
    terms = query(db, "SELECT e.loss_terms FROM run_epochs e JOIN runs r ON r.id = e.run_id "
                      "WHERE r.method = 'joint-contrastive' ORDER BY e.id")
    assert set(json.loads(terms[0]["loss_terms"])) == {"cos", "itc"} and len(terms) == 2 * 15


class Interrupt(Exception):
    """Stands in for a worker killed after an epoch."""


@pytest.mark.slow
def test_retrieval_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from bench.run.run_spec import run_spec
    from bench.run.workbench import Workbench
    from bench.sweep.checkpoint import Checkpointer

    write_coco(tmp_path / "data", n_train=60, n_val=30)
    grid_path = tmp_path / "coco.yaml"
    grid_path.write_text(COCO_GRID.replace("epochs: 15", "epochs: 4"))

    def stop_after_two(record) -> None:  # noqa: ANN001
        if record.epoch == 1:
            raise Interrupt

    with registered():
        spec = next(s for s in load_grid(grid_path).specs
                    if (s.student, s.method) == ("bottleneck", "joint-contrastive"))
        bench = Workbench(RunContext(tmp_path / "c", tmp_path / "data", "cpu"))
        straight = run_spec(spec, bench, "s")
        checkpoint = Checkpointer(tmp_path / "runs", spec.key)
        torch.randn(1000)  # whatever ran before in this process must not change a spec's result
        with pytest.raises(Interrupt):
            run_spec(spec, bench, "s", on_epoch=stop_after_two, checkpoint=checkpoint)
        assert checkpoint.saved_epoch() == 2
        resumed = run_spec(spec, bench, "s", checkpoint=checkpoint)
    assert resumed.resumed_from_epoch == 2 and straight.resumed_from_epoch is None
    assert [e.epoch for e in resumed.epoch_records] == [0, 1, 2, 3]
    assert [e.val_acc for e in resumed.epoch_records] == [e.val_acc for e in straight.epoch_records]
    assert (resumed.mean_recall, resumed.i2t_r1, resumed.t2i_r5) == (straight.mean_recall, straight.i2t_r1,
                                                                     straight.t2i_r5)
    assert straight.mean_recall > 0.2  # it learned something: 30 test images, chance R@1 is 1/30
