"""Cross-field checks when the file loads: `bench plan`, `bench run` and `bench study` refuse a cell whose student or
method cannot be built (heads vs width, patch vs image, layer pairs), in one line naming the field and the cell."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.cli.app import app
from bench.config.grid import relevant_defaults
from bench.config.shapes import cell_problem
from bench.config.study import load_study_file, searched_trials
from bench.core.errors import BenchError
from bench.core.registries import METHODS, STUDENTS, TEACHERS, registries
from bench.core.spec import ExperimentSpec
from bench.run.parts import incompatibility

TINY = {"image_size": 32, "train_limit": 60, "val_limit": 20, "test_limit": 20}
CELL = {"teacher": "effnet-lite0", "method": "kd", "dataset": "digits", "epochs": 1, "data": TINY}


def invoke(tmp_path: Path, command: str, spec: dict) -> tuple[int, str]:
    """Run `bench COMMAND FILE` on a fresh database; (exit code, stderr); the database must not exist after."""
    (tmp_path / "file.yaml").write_text(yaml.safe_dump(spec))
    db = tmp_path / "results.db"
    extra = [] if command == "plan" else ["--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
                                          "--run-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, [command, str(tmp_path / "file.yaml"), "--db", f"sqlite:///{db}", *extra])
    assert not db.exists(), "a refused file must write nothing"
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(("extra", "words"), [
    ({"student": "mha", "hparams": {"width": [32, 30], "heads": 4}},
     "cell mha + kd on effnet-lite0/digits: mha width 30 must be divisible by heads 4"),
    ({"student": "vit", "hparams": {"patch_size": 5}},
     "cell vit + kd on effnet-lite0/digits: vit patch_size 5 must divide the student image size 8"),
    ({"student": "vit", "hparams": {"width": 66, "heads": 4, "patch_size": 4}},
     "vit width 66 must be divisible by heads 4"),
    ({"student": "vit", "teacher": "dino-vits16", "method": "attention",
      "hparams": {"patch_size": 4, "at_layers": "0=99"}}, "the teacher has no attn.99 (it has attn.0..attn.11)"),
    ({"student": "vit", "teacher": "dino-vits16", "method": "attention",
      "hparams": {"patch_size": 4, "depth": 4, "at_layers": "7=0"}},
     "the student has no attn.7 (it has attn.0..attn.3)"),
])
def test_a_grid_cell_that_cannot_be_built_is_refused_when_the_file_loads(tmp_path: Path, command: str,
                                                                          extra: dict, words: str) -> None:
    code, stderr = invoke(tmp_path, command, {**CELL, **extra})
    assert code == 2
    assert stderr.count("\n") == 1 and "field 'hparams'" in stderr and words in stderr, stderr


def test_a_study_pair_that_only_some_trials_draw_is_refused_at_load(tmp_path: Path) -> None:
    """heads 6 with the low end of the width range (32) fails; the study used to run until a trial drew it."""
    search = {"width": {"type": "int", "low": 32, "high": 96, "step": 32}, "heads": {"type": "categorical",
                                                                                      "choices": [4, 6]}}
    study = {**CELL, "student": ["projection", "mha"], "search": search, "trials": 3}
    code, stderr = invoke(tmp_path, "study", study)
    assert code == 2 and "field 'search': cell mha + kd on effnet-lite0/digits (searched heads=6, width=32): " \
                         "mha width 32 must be divisible by heads 6" in stderr, stderr
    code, stderr = invoke(tmp_path, "plan", study)
    assert code == 2 and "searched heads=6, width=32" in stderr
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump({**study, "search": {**search, "heads": {
        "type": "categorical", "choices": [4, 8]}}}))
    assert load_study_file(tmp_path / "ok.yaml").trials == 3


def test_the_prebuilt_trials_cover_every_choice_and_both_ends(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**CELL, "student": ["projection", "mha"], "search": {
        "width": {"type": "int", "low": 32, "high": 100, "step": 32}, "heads": {"type": "categorical",
                                                                               "choices": [4, 8]}}}))
    trials = searched_trials(load_study_file(tmp_path / "s.yaml"))
    assert {(t["student"], t["width"], t["heads"]) for t in trials} == {
        (s, w, h) for s in ("projection", "mha") for w in (32, 96) for h in (4, 8)}  # 96: the last step <= 100


def test_a_vit_study_searching_a_bad_patch_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**CELL, "student": "vit", "search": {
        "patch_size": {"type": "categorical", "choices": [4, 3]}}}))
    with pytest.raises(BenchError, match=r"searched patch_size=3\): vit patch_size 3 must divide"):
        load_study_file(tmp_path / "s.yaml")


@pytest.mark.parametrize("teacher", ["effnet-lite0", "dino-vits16"])
def test_no_compatible_default_cell_is_refused(teacher: str) -> None:
    """The load-time build uses placeholder widths: it must never refuse a cell the real build accepts."""
    card, regs = TEACHERS.entry(teacher).card, registries()
    checked = 0
    for student in STUDENTS.names():
        for method in METHODS.names():
            hparams = relevant_defaults(regs, student, method)
            if METHODS.entry(method).card.joint_space or incompatibility(student, method, hparams, teacher,
                                                                         card.taps, card.modality):
                continue
            spec = ExperimentSpec.create(teacher=teacher, student=student, method=method, dataset="cifar-100",
                                         hparams=hparams, data={}, epochs=1, seed=0)
            assert cell_problem(spec) is None, (student, method)
            checked += 1
    assert checked > 100


def test_plan_builds_the_cells_only_the_data_can_check_as_run_does(tmp_path: Path) -> None:
    """An ImageFolder's image size is known only from its files: plan builds that cell on the loaded data."""
    from tests.support.dataset_fixtures import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", per_class=8)
    grid = {**CELL, "dataset": "imagefolder", "student": "vit", "hparams": {"patch_size": 8, "depth": 1},
            "data": {"decode_size": 12, "val_fraction": 0.25, "train_limit": 12, "test_limit": 6}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    db = tmp_path / "results.db"
    args = ["plan", str(tmp_path / "grid.yaml"), "--db", f"sqlite:///{db}", "--data-root", str(root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.stderr.startswith("error: vit + kd on effnet-lite0/imagefolder: vit "
                                                              "patch_size 8 must divide the student image size 12")
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**grid, "hparams": {"patch_size": 4, "depth": 1}}))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "runnable" in result.stdout, result.output
    assert not db.exists()
