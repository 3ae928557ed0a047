"""`data.kd_targets`: KD reads out-of-fold probe logits by default; every run row says which targets it read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.config.grid import load_grid
from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.names import IMAGE_TEXT
from bench.core.registries import TEACHERS
from bench.data.splits import DataConfig
from bench.run.context import RunContext
from bench.run.workbench import Workbench
from bench.store.sql import read_only_query
from bench.sweep.grid import run_grid
from tests.support.fakes import SIZE, FakeImageTextTeacher

TEACHER = "fake-kd-targets"
DATA = {"image_size": SIZE, "student_image_size": SIZE, "train_limit": 150, "val_limit": 50, "test_limit": 100}


@pytest.fixture
def fake_teacher() -> Iterator[None]:
    with TEACHERS.temporarily(TEACHER, lambda weights, **_: FakeImageTextTeacher(),
                              TeacherCard("test", FakeImageTextTeacher.taps, IMAGE_TEXT)):
        yield


def test_default_targets_leave_spec_keys_alone() -> None:
    assert "kd_targets" not in DataConfig().as_dict()
    assert DataConfig(kd_targets="in-sample").as_dict()["kd_targets"] == "in-sample"


def test_bad_targets_kind_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("teacher: effnet-lite0\nstudent: projection\nmethod: kd\ndataset: digits\n"
                    "data: {kd_targets: insample}\n")
    with pytest.raises(BenchError, match="data.kd_targets"):
        load_grid(path)


@pytest.mark.usefixtures("fake_teacher", "one_thread")
def test_cached_probe_is_keyed_by_its_targets(tmp_path: Path) -> None:
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    oof_data = Workbench(context).data("digits", DataConfig(**DATA))
    oof = Workbench(context).probe(TEACHER, oof_data)
    in_sample_bench = Workbench(context)
    in_sample = in_sample_bench.probe(TEACHER, in_sample_bench.data("digits", DataConfig(**DATA,
                                                                                          kd_targets="in-sample")))
    assert (oof.kd_targets, in_sample.kd_targets) == ("probe-oof-5", "probe-in-sample")
    assert in_sample_bench.cache.misses == 1  # features were cached; the in-sample probe was not the oof one
    assert not oof.logits["train"].equal(in_sample.logits["train"])
    again_bench = Workbench(context)
    again = again_bench.probe(TEACHER, oof_data)
    assert again.kd_targets == "probe-oof-5" and again.logits["train"].equal(oof.logits["train"])
    assert again.weight_decay == oof.weight_decay and again_bench.cache.misses == 0


@pytest.mark.usefixtures("fake_teacher", "one_thread")
def test_run_rows_record_the_kd_targets(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    for name, extra in (("oof", {}), ("in-sample", {"kd_targets": "in-sample"})):
        grid_path = tmp_path / f"{name}.yaml"
        grid_path.write_text(json.dumps({
            "name": name, "teacher": TEACHER, "student": ["projection"], "method": ["scratch", "kd"],
            "dataset": "digits", "epochs": 1, "data": {**DATA, **extra}, "hparams": {"batch_size": 64},
        }))
        summary = run_grid(load_grid(grid_path), db, context)
        assert (summary.done, summary.failed) == (3, 0)
    _, rows = read_only_query(db, "SELECT study, method, kd_targets, hparams FROM runs ORDER BY id")
    assert [row[:3] for row in rows] == [
        ("oof", "teacher-probe", "probe-oof-5"), ("oof", "scratch", None), ("oof", "kd", "probe-oof-5"),
        ("in-sample", "teacher-probe", "probe-in-sample"), ("in-sample", "scratch", None),
        ("in-sample", "kd", "probe-in-sample"),
    ]
    assert json.loads(rows[0][3])["weight_decay"] == json.loads(rows[3][3])["weight_decay"]
