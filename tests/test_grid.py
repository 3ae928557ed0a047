from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.grid import TRAIN_DEFAULTS, load_grid
from students import STUDENTS
from students.base import STANDALONE, StudentBuilder


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


GOOD = """
name: g
teacher: effnet-lite0
student: [projection, resnet]
method: [scratch, kd]
dataset: digits
seeds: [0, 1]
epochs: 2
hparams:
  temperature: [2.0, 4.0]
  lr: 0.01
"""


def test_lists_multiply_and_irrelevant_hparams_do_not(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, GOOD))
    assert grid.name == "g"
    # scratch ignores temperature: 2 students x 2 seeds x (1 scratch + 2 kd temperatures) = 12
    assert len(grid.specs) == 12
    scratch = [s for s in grid.specs if s.method == "scratch"]
    assert all("temperature" not in s.hparams_dict for s in scratch)
    kd = [s for s in grid.specs if s.method == "kd"]
    assert sorted({s.hparams_dict["temperature"] for s in kd}) == [2.0, 4.0]
    assert all(s.hparams_dict["lr"] == 0.01 for s in grid.specs)
    # defaults are resolved into the spec, so the stored hparams are the ones that ran
    resnet = next(s for s in grid.specs if s.student == "resnet")
    assert resnet.hparams_dict["depth"] == 8
    assert resnet.hparams_dict["batch_size"] == TRAIN_DEFAULTS["batch_size"]
    assert len({s.key for s in grid.specs}) == 12


def test_scalars_become_lists_and_name_defaults_to_stem(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, "teacher: effnet-lite0\nstudent: projection\nmethod: kd\ndataset: digits\n"))
    assert grid.name == "grid" and len(grid.specs) == 1
    assert grid.specs[0].epochs == 10 and grid.specs[0].seed == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("student:", "studnet:"), "field 'studnet': unknown field; allowed: name, teacher"),
        (GOOD.replace("[projection, resnet]", "[projection, resent]"),
         "field 'student': unknown student 'resent'; did you mean: resnet?"),
        (GOOD.replace("temperature:", "temprature:"),
         "field 'hparams.temprature': no student or method in this grid uses it; did you mean: temperature?"),
        (GOOD.replace("epochs: 2", "epochs: two"), "field 'epochs.0': 'two' is not an integer; epochs must be"),
        (GOOD + "data:\n  image_sise: 3\n", "field 'data.image_sise': unknown field; allowed: image_size"),
        ("teacher: [effnet-lite0\n", "invalid YAML at line 2"),
        ("- a\n- b\n", "a grid file must be a mapping"),
        (GOOD + "weights:\n  other: /x.pth\n", "field 'weights': 'other' is not one of this grid's teachers"),
    ],
)
def test_bad_grids_give_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BenchError) as info:
        load_grid(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")


def test_incompatible_pair_rejected_at_load(tmp_path: Path) -> None:
    STUDENTS.add("logits-only-test", StudentBuilder(lambda c, h: None, provides=frozenset({"logits"})),
                 kind=STANDALONE, description="test student without an embedding")
    try:
        path = write(tmp_path, "teacher: effnet-lite0\nstudent: logits-only-test\nmethod: feature\ndataset: digits\n")
        with pytest.raises(BenchError, match="cannot be trained with method 'feature'.*no \\['embedding'\\]"):
            load_grid(path)
    finally:
        STUDENTS.remove("logits-only-test")
