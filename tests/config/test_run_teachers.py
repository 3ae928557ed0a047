"""Issue 23: `teacher: run:...` selectors and two-stage files are checked before anything runs (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.grid import load_grid
from bench.config.run_teachers import parse_selector, resolve_run_teachers
from bench.config.stages import stages_of
from bench.core.errors import BenchError


def test_selector_parses_fields_and_defaults_to_val_acc() -> None:
    selector = parse_selector("run:best(student=resnet32x4, dataset=cifar-100, metric=val_acc)", "")
    assert selector is not None and selector.mode == "best" and selector.metric == "val_acc"
    assert selector.filters == {"student": "resnet32x4", "dataset": "cifar-100"}
    assert parse_selector("run:each(stage=teacher)", "").mode == "each"
    assert parse_selector("run:3f2a9c", "") is None  # a plain id or spec-key prefix


@pytest.mark.parametrize(("text", "says"), [
    ("run:best(metric=test_acc)", "test accuracy is never used"),
    ("run:best(color=red)", "'color=red' is not field=value"),
    ("run:best(seed=one)", "seed must be a whole number"),
    ("run:best(student=resnet8x4", "write run:best(field=value"),
])
def test_bad_selectors_are_one_line(text: str, says: str) -> None:
    with pytest.raises(BenchError, match=says.replace("(", r"\(")):
        parse_selector(text, "grid.yaml: ")


def test_a_run_teacher_needs_the_database(tmp_path: Path) -> None:
    grid = tmp_path / "g.yaml"
    grid.write_text("teacher: run:abc\nstudent: resnet8x4\nmethod: kd\ndataset: digits\n")
    with pytest.raises(BenchError, match="looked up in the results database"):
        load_grid(grid)


def test_unknown_runs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'none.db'}"
    raw = {"teacher": ["run:best(student=resnet32x4)"], "dataset": "digits"}
    with pytest.raises(BenchError, match="matches no done run with a kept artifact"):
        resolve_run_teachers(raw, tmp_path / "g.yaml", db)
    with pytest.raises(BenchError, match="run:ffff: no runs in|no run with id or spec key prefix"):
        resolve_run_teachers({"teacher": "run:ffff", "dataset": "digits"}, tmp_path / "g.yaml", db)


def test_stages_merge_shared_fields_and_name_their_studies(tmp_path: Path) -> None:
    raw = {"name": "two", "dataset": "digits", "data": {"train_limit": 100}, "hparams": {"lr": 0.05},
           "stages": [{"name": "teacher", "teacher": "effnet-lite0", "student": "resnet32x4", "method": "scratch"},
                      {"name": "students", "teacher": "run:best(stage=teacher)", "student": "resnet8x4",
                       "method": "kd", "hparams": {"alpha": 0.9}}]}
    teacher, students = stages_of(raw, tmp_path / "f.yaml")
    assert (teacher.study, students.study) == ("two-teacher", "two-students")
    assert students.raw["hparams"] == {"lr": 0.05, "alpha": 0.9} and students.raw["data"] == {"train_limit": 100}
    assert teacher.raw["name"] == "two-teacher"


@pytest.mark.parametrize(("stages", "says"), [
    ([], "non-empty list of grids"),
    ([{"teacher": "x"}], "with a name"),
    ([{"name": "a"}, {"name": "a"}], "'a' is used twice"),
    ([{"name": "students", "teacher": "run:best(stage=teacher)"}], "names stage 'teacher', which is not an earlier"),
])
def test_malformed_stages_are_one_line(tmp_path: Path, stages: list, says: str) -> None:
    with pytest.raises(BenchError, match=says):
        stages_of({"stages": stages}, tmp_path / "f.yaml")
