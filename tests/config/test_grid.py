from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.grid import TRAIN_DEFAULTS, load_grid
from bench.core.cards import StudentCard
from bench.core.errors import BenchError
from bench.core.names import STANDALONE
from bench.core.registries import STUDENTS
from bench.students.base import StudentBuilder


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
        (GOOD + "data:\n  augment: flip\n", "field 'data.augment': 'flip' augments images, and student 'projection'"),
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
    with STUDENTS.temporarily("logits-only-test", StudentBuilder(lambda c, h: None, provides=frozenset({"logits"})),
                              StudentCard(STANDALONE), description="test student without an embedding"):
        path = write(tmp_path, "teacher: effnet-lite0\nstudent: logits-only-test\nmethod: feature\ndataset: digits\n")
        with pytest.raises(BenchError, match="cannot be trained with method 'feature'.*no \\['embedding'\\]"):
            load_grid(path)


def test_knobs_check_type_range_choices_and_pattern() -> None:
    from bench.core.knobs import Knob

    depth = Knob(8, int, ge=8, le=200, pattern=(6, 2))
    assert depth.problem(14, "depth") is None and depth.problem(7, "depth") is not None
    assert "6n+2 in [8, 200]" in str(depth.problem(20 + 1, "depth"))
    assert "is not an integer" in str(depth.problem(8.0, "depth"))
    rate = Knob(0.1, float, gt=0, le=10)
    assert rate.problem(1, "lr") is None  # an int is a valid number (and is kept as given: spec keys hold)
    assert all(rate.problem(bad, "lr") for bad in (0, -1, 11, True, "fast", float("nan"), float("inf")))
    assert Knob(None, int, ge=8, optional=True).problem(None, "image_size") is None
    assert "one of: mse, cosine" in str(Knob("mse", str, choices=("mse", "cosine")).problem("l1", "feature_loss"))
    with pytest.raises(ValueError, match="invalid knob declaration"):
        Knob(0.0, float, gt=0)


def test_every_student_and_method_declares_typed_knobs_and_list_shows_them() -> None:
    from typer.testing import CliRunner

    from bench.cli.app import app
    from bench.core.registries import METHODS

    for registry in (STUDENTS, METHODS):
        for entry in registry:
            knobs = entry.obj.knobs
            assert set(knobs) == set(entry.obj.defaults)
            assert all(knob.type is not object for knob in knobs.values()), entry.name
    wide = {"COLUMNS": "240"}  # the table wraps to the terminal's width; at 240 a knob's text stays on one line
    result = CliRunner().invoke(app, ["list", "methods"], env=wide)
    assert result.exit_code == 0 and "temperature=4.0 ((0,100])" in result.stdout
    result = CliRunner().invoke(app, ["list", "students"], env=wide)
    assert result.exit_code == 0 and "depth=8 (int 6n+2 [8,200])" in result.stdout
    narrow = CliRunner().invoke(app, ["list", "methods"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_protocol_knobs_keep_old_keys_and_split_only_settings_they_change(tmp_path: Path) -> None:
    before = {s.key for s in load_grid(write(tmp_path, GOOD)).specs}
    at_default = GOOD + "  optimizer: adamw\n  schedule: cosine\n  momentum: 0.5\n  gamma: 0.5\n  label_smoothing: 0\n"
    assert {s.key for s in load_grid(write(tmp_path, at_default)).specs} == before
    sgd = GOOD + "  optimizer: sgd\n  schedule: [cosine, multistep]\n  milestones: '1'\n  nesterov: true\n"
    specs = load_grid(write(tmp_path, sgd)).specs
    assert len(specs) == 24 and not {s.key for s in specs} & before
    multistep = [s.hparams_dict for s in specs if s.hparams_dict.get("schedule") == "multistep"]
    cosine = [s.hparams_dict for s in specs if "schedule" not in s.hparams_dict]
    assert len(multistep) == len(cosine) == 12
    assert all(h["milestones"] == "1" and h["optimizer"] == "sgd" and h["nesterov"] is True for h in multistep)
    assert all("milestones" not in h and "momentum" not in h for h in cosine)  # unread there, default here


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  schedule: multistep\n", "field 'hparams': schedule: multistep needs milestones"),
        ("  milestones: '180,150'\n", "field 'hparams.milestones': '180,150' must list strictly increasing epochs"),
        ("  optimizer: adam\n", "'adam' is not allowed; optimizer must be one of: adamw, sgd"),
        ("  milestones: [150, 180]\n", "150 is not a quoted string of epochs; write milestones: '150,180,210'"),
        ("  momentum: 1.0\n", "field 'hparams.momentum': 1.0 is out of range; momentum must be a number in [0, 1)"),
        ("  optimizer: sgd\n  momentum: 0\n  nesterov: true\n", "nesterov: true needs momentum > 0"),
    ],
)
def test_bad_protocol_knobs_give_one_clear_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(BenchError) as info:
        load_grid(write(tmp_path, GOOD + extra))
    assert message in str(info.value) and "\n" not in str(info.value)
