"""Issue 23: a two-stage file trains its teacher, then distils its best seed; the trained run is the teacher."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.support.fakes import registered
from tests.test_artifacts import bench_cli

STAGES = """
name: two-stage-test
dataset: digits
data: {image_size: 12, student_image_size: 8, train_limit: 600, val_limit: 150, test_limit: 200}
hparams: {optimizer: sgd, momentum: 0.9, weight_decay: 0.0005, lr: 0.05, batch_size: 32}
stages:
  - name: teacher
    teacher: fake-image-text
    student: resnet20
    method: scratch
    epochs: 10
    hparams: {schedule: multistep, milestones: '8', gamma: 0.1}
  - name: students
    teacher: run:best(stage=teacher, student=resnet20, metric=val_acc)
    student: resnet8x4
    method: [scratch, kd]
    epochs: 1
    hparams: {schedule: constant, alpha: 0.9, temperature: 4.0, batch_size: 128}  # 5 steps: a weak student
"""


def rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


@pytest.mark.slow
def test_two_stage_file_plans_runs_and_reruns_as_nothing(tmp_path: Path) -> None:
    path, db_file = tmp_path / "two.yaml", tmp_path / "results.db"
    path.write_text(STAGES)
    db = f"sqlite:///{db_file}"
    common = ("--db", db, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")
    with registered():
        code, output = bench_cli("plan", str(path), "--db", db)
        assert code == 0, output
        assert "stage teacher (grid two-stage-test-teacher): 2 cells" in output
        assert "stage students (grid two-stage-test-students)" in output and "run:teacher-resnet20-best" in output
        assert not db_file.exists() or not rows(db_file, "SELECT name FROM sqlite_master WHERE name = 'runs'")

        code, output = bench_cli("run", str(path), *common)
        assert code == 0, output
        (teacher_key, teacher_acc, artifact), = rows(db_file, "SELECT spec_key, test_acc, artifact_path FROM runs "
                                                              "WHERE student = 'resnet20'")
        name = f"run:{teacher_key[:12]}"
        reference = rows(db_file, f"SELECT test_acc, teacher_reference FROM runs WHERE teacher = '{name}' "
                                  "AND method = 'teacher-probe'")
        # the rebuilt teacher scores exactly what its run scored: the same weights on the same test images, at the
        # 8 px its student trained on although data.image_size says 12
        assert reference[0][0] == pytest.approx(teacher_acc, abs=1e-6)
        assert "own head (no probe)" in reference[0][1]
        found = dict(rows(db_file, f"SELECT method, test_acc FROM runs WHERE teacher = '{name}' "
                                   "AND method IN ('scratch', 'kd')"))
        kd_row = rows(db_file, f"SELECT teacher_acc, kd_targets FROM runs WHERE teacher = '{name}' AND method = 'kd'")
        assert kd_row[0][0] == pytest.approx(teacher_acc, abs=1e-6) and kd_row[0][1] == "own-head-in-sample"
        assert teacher_acc > found["scratch"] + 0.15, (teacher_acc, found)  # the teacher is clearly stronger

        code, output = bench_cli("run", str(path), *common)  # both stages done: nothing runs, same teacher
        assert code == 0, output
        assert output.count("0 run now") == 2, output
        assert len(rows(db_file, "SELECT id FROM runs")) == 5

        from bench.core.registries import TEACHERS

        teacher = TEACHERS.get(name)(artifact)
        assert teacher.fingerprint == hashlib.sha256(Path(artifact).read_bytes()).hexdigest()[:16]  # keys the cache
        assert teacher.taps[:2] == ("logits", "pooled") and "hidden.2" in teacher.taps

        grid = tmp_path / "again.yaml"
        grid.write_text(f"teacher: run:{teacher_key[:8]}\nstudent: resnet8x4\nmethod: kd\ndataset: digits\nepochs: 1\n")
        with open(artifact, "ab") as handle:
            handle.write(b"\0")  # the artifact changed after its row was stored
        code, output = bench_cli("run", str(grid), *common)
        assert code == 2 and "has changed" in output and len(output.strip().splitlines()) == 1, output
        assert len(rows(db_file, "SELECT id FROM runs")) == 5


def test_repdistiller_study_plans_every_stage_on_a_named_gpu(tmp_path: Path) -> None:
    """Before any teacher exists: both kinds of stage listed, the data's presence or fix named, a total in hours."""
    code, output = bench_cli("plan", "studies/repdistiller-cifar100.yaml", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                             "--gpu", "h100", "--data-root", str(tmp_path))
    assert "stage teacher (grid repdistiller-cifar100-teacher): 5 cells" in output, output
    assert "stage from-resnet32x4 (grid repdistiller-cifar100-from-resnet32x4): 64 cells" in output
    assert "run:teacher-resnet32x4-best x cifar-100: 63 runs" in output  # each stage's stand-in is its own teacher
    assert "run:teacher-vgg13-best: trained by an earlier stage first" in output
    total = next(line for line in output.splitlines() if line.strip().startswith("total"))
    assert total.strip().endswith(" h"), total  # 172 runs of 240 epochs: hours, not '?'
    assert "estimated time on one h100 (table)" in output
    basis = next(line for line in output.splitlines() if line.startswith("estimate basis:"))
    assert basis.startswith("estimate basis: GPU h100, not timed here: throughput-table rates measured on an H200")
    assert "x 0.9" in basis and "FLOP-scaled from the measured resnet at 64 px rate" in basis, basis
    scaled = basis.split("no row (")[1].split(")")[0].split(", ")  # every CIFAR net of the file and each stand-in
    assert {"resnet8x4", "resnet32x4", "wrn-16-2", "vgg8", "run:teacher-resnet32x4-best"} <= set(scaled), basis
    assert "effnet-lite0" not in scaled  # it has a measured row
    if "cifar-100: MISSING" in output:
        assert code == 2 and "cifar-100-python" in output and "--data-root" in output
