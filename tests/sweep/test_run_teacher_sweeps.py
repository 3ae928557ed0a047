"""Issue 23: `bench study` and `bench launch` resolve `teacher: run:...` against --db as `bench run` does; a two-stage
file is refused by `bench launch` in one line (its later stages' teachers do not exist before the earlier run)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.fakes import registered
from tests.sweep.test_launch import bench
from tests.test_artifacts import bench_cli

DATA = "data: {image_size: 8, student_image_size: 8, train_limit: 300, val_limit: 100, test_limit: 100}\n"
TEACHER = "name: teach\nteacher: fake-image-text\ndataset: digits\n" + DATA + \
    "student: resnet8x4\nmethod: scratch\nepochs: 1\n"
STUDY = """name: from-run
teacher: run:best(study=teach, student=resnet8x4)
dataset: digits
student: resnet8x4
method: kd
epochs: 1
search:
  alpha: {type: categorical, choices: [0.5, 0.9]}
sampler: {name: random, seed: 0}
pruner: none
trials: 2
final: {seeds: [1], top: 1}
""" + DATA


def _rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """A database holding one trained resnet8x4 (study `teach`, artifact kept): its file, spec key, test accuracy."""
    root = tmp_path_factory.mktemp("trained")
    (root / "teach.yaml").write_text(TEACHER)
    with registered():
        code, output = bench_cli("run", str(root / "teach.yaml"), "--db", f"sqlite:///{root / 'r.db'}",
                                 "--cache-dir", str(root / "cache"), "--device", "cpu")
    assert code == 0, output
    (key, acc), = _rows(root / "r.db", "SELECT spec_key, test_acc FROM runs WHERE student = 'resnet8x4'")
    return root / "r.db", key, acc


def _copy(trained: tuple[Path, str, float], tmp_path: Path) -> Path:
    db = tmp_path / "r.db"  # the artifact paths in it still point at the fixture's files
    with sqlite3.connect(trained[0]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)  # with what the write-ahead log holds
    return db


@pytest.mark.slow
def test_a_study_searches_over_a_trained_run_teacher(trained: tuple[Path, str, float], tmp_path: Path) -> None:
    db = _copy(trained, tmp_path)
    (tmp_path / "study.yaml").write_text(STUDY)
    code, output = bench_cli("study", str(tmp_path / "study.yaml"), "--db", f"sqlite:///{db}",
                             "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")
    assert code == 0, output
    name = f"run:{trained[1][:12]}"
    found = _rows(db, "SELECT study, teacher, method, seed, test_acc, teacher_acc, teacher_reference FROM runs "
                      "WHERE study LIKE 'from-run%' ORDER BY id")
    trials = [row for row in found if row[0] == "from-run"]
    finals = [row for row in found if row[0] == "from-run/final" and row[2] == "kd"]
    assert len(trials) == 2 and all(row[1] == name and row[4] is None for row in trials), found  # val only
    assert len(finals) == 1 and finals[0][1] == name and finals[0][3] == 1 and finals[0][4] is not None
    assert finals[0][5] == pytest.approx(trained[2], abs=1e-6)  # the teacher reference is the run's own test acc
    assert "own head (no probe)" in finals[0][6]


@pytest.mark.slow
def test_launch_enqueues_a_grid_over_a_trained_run_teacher(trained: tuple[Path, str, float], tmp_path: Path) -> None:
    db = _copy(trained, tmp_path)
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: launched\nteacher: run:{trained[1][:8]}\ndataset: digits\nstudent: resnet8x4\n"
                    f"method: kd\nepochs: 1\n{DATA}")
    launched = bench("launch", str(grid), "--executor", "local", "--workers", "1", "--db", f"sqlite:///{db}",
                     "--log-dir", str(tmp_path / "logs"), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
                     "--threads", "1")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    found = _rows(db, "SELECT teacher, method, status, teacher_acc FROM runs WHERE study = 'launched'")
    name = f"run:{trained[1][:12]}"
    assert sorted(row[:3] for row in found) == [(name, "kd", "done"), (name, "teacher-probe", "done")], found
    assert all(row[3] == pytest.approx(trained[2], abs=1e-6) for row in found)


def test_launch_refuses_a_two_stage_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("name: two\ndataset: digits\nstages:\n  - {name: teacher, teacher: effnet-lite0, "
                    "student: resnet8x4, method: scratch}\n")
    code, output = bench_cli("launch", str(path), "--db", f"sqlite:///{tmp_path / 'r.db'}", "--executor", "local")
    assert code == 2 and "two-stage file" in output and "bench run FILE" in output, output
    assert len(output.strip().splitlines()) == 1 and not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("command", ["study", "launch"])
def test_a_study_over_an_untrained_run_teacher_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "study.yaml").write_text(STUDY)
    code, output = bench_cli(command, str(tmp_path / "study.yaml"), "--db", f"sqlite:///{tmp_path / 'r.db'}",
                             "--executor" if command == "launch" else "--device", "local" if command == "launch"
                             else "cpu")
    assert code == 2 and "field 'teacher'" in output and "matches no done run" in output, output
    assert len(output.strip().splitlines()) == 1
