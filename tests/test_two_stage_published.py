"""Issue 23: the two-stage miniature's rows beside a published CSV. The student stage's teacher is a trained run
(`run:<key>`); the published row names its architecture (resnet32x4), and the report matches the two."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from statistics import mean, stdev

import pytest
from scipy.stats import t

from tests.support.fakes import registered
from tests.test_artifacts import bench_cli

MINIATURE = """
name: mini-published
dataset: digits
data: {image_size: 8, student_image_size: 8, train_limit: 400, val_limit: 100, test_limit: 200}
hparams: {optimizer: sgd, momentum: 0.9, weight_decay: 0.0005, lr: 0.05, batch_size: 32}
stages:
  - name: teacher
    teacher: fake-image-text
    student: resnet32x4
    method: scratch
    epochs: 3
    hparams: {lr: 0.01, schedule: multistep, milestones: '2', gamma: 0.1}
  - name: students
    teacher: run:best(stage=teacher, student=resnet32x4, metric=val_acc)
    student: resnet8x4
    method: [scratch, kd]
    seeds: [0, 1]
    epochs: 1
    hparams: {schedule: constant, alpha: 0.9, temperature: 4.0, batch_size: 64}
"""
HEADER = ["source", "table", "selection", "dataset", "teacher", "student", "method", "published_method", "test_acc"]


def _rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of per-seed accuracies, in percent (what the report computes, redone here)."""
    center, half = mean(values), t.ppf(0.975, len(values) - 1) * stdev(values) / len(values) ** 0.5
    return 100 * center, 100 * (center - half), 100 * (center + half)


@pytest.mark.slow
def test_the_miniatures_rows_meet_a_published_csv_through_the_teachers_architecture(tmp_path: Path) -> None:
    path, db_file = tmp_path / "mini.yaml", tmp_path / "results.db"
    path.write_text(MINIATURE)
    db = f"sqlite:///{db_file}"
    with registered():
        code, output = bench_cli("run", str(path), "--db", db, "--cache-dir", str(tmp_path / "cache"),
                                 "--device", "cpu")
        assert code == 0, output
    (teacher_key, params, macs, latency), = _rows(db_file, "SELECT spec_key, params, macs, latency_ms FROM runs "
                                                           "WHERE student = 'resnet32x4'")
    name = f"run:{teacher_key[:12]}"
    # the trained-run teacher's cost is its own network's, as its run measured it: MACs exactly (no probe head on
    # top of its own classifier), params equal, latency within the noise of a shared CPU
    costs = _rows(db_file, f"SELECT method, inference_params, macs, teacher_macs, teacher_latency_ms FROM runs "
                           f"WHERE teacher = '{name}'")
    assert len(costs) == 5 and all(row[3] == macs for row in costs), (macs, costs)
    reference = next(row for row in costs if row[0] == "teacher-probe")
    assert reference[1] == params and reference[2] == macs
    assert all(latency / 3 < row[4] < latency * 3 for row in costs), (latency, costs)
    accs = {method: [acc for _, acc in sorted(_rows(db_file, "SELECT seed, test_acc FROM runs WHERE student = "
                                                           f"'resnet8x4' AND method = '{method}'"))]
            for method in ("scratch", "kd")}
    assert all(len(values) == 2 for values in accs.values()), accs
    kd_mean, kd_low, kd_high = _interval(accs["kd"])
    scratch_mean, scratch_low, scratch_high = _interval(accs["scratch"])
    kd_published = round((kd_low + kd_high) / 2, 2)  # inside our interval (its middle)
    scratch_published = 100.0  # outside our interval unless two seeds far apart make it wider than [0, 100]
    scratch_inside = "yes" if scratch_low <= scratch_published <= scratch_high else "no"
    published = tmp_path / "published.csv"
    with open(published, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow(["paper", "1", "best", "digits", "resnet32x4", "resnet8x4", "kd", "KD", kd_published])
        writer.writerow(["paper", "1", "best", "digits", "wrn-40-2", "resnet8x4", "kd", "KD", 99.0])  # other teacher
        writer.writerow(["paper", "1", "best", "digits", "", "resnet8x4", "scratch", "vanilla", scratch_published])
        writer.writerow(["paper", "1", "best", "cifar-100", "resnet32x4", "resnet8x4", "kd", "KD", 73.33])

    # only the student stage's rows: the teacher's architecture comes from its own row all the same
    code, output = bench_cli("report", "--db", db, "--out", str(tmp_path / "report"), "--format", "md,csv",
                             "--published", str(published), "--where", "study = 'mini-published-students'")
    assert code == 0, output
    text = (tmp_path / "report" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith(f"| resnet32x4 ({name}) | resnet8x4 |")]
    assert len(table) == 2, text
    kd_line = next(line for line in table if "| kd |" in line)
    scratch_line = next(line for line in table if "| scratch |" in line)
    assert f"| {kd_mean:.2f} [{kd_low:.2f}, {kd_high:.2f}] | 2 | {kd_published:.2f} (best) |" in kd_line
    assert f"| {kd_mean - kd_published:+.2f} | yes |" in kd_line
    assert f"| {scratch_mean:.2f} [{scratch_low:.2f}, {scratch_high:.2f}] | 2 |" in scratch_line
    assert f"| {scratch_published:.2f} (best) | {scratch_mean - scratch_published:+.2f} | {scratch_inside} |" in \
        scratch_line
    assert "99.00" not in text and "73.33" not in text  # another teacher, another dataset: no match
    with open(tmp_path / "report" / "published.csv", newline="") as handle:
        stored = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(stored) == {"kd", "scratch"} and stored["kd"]["teacher"] == name
    assert stored["kd"]["teacher_label"] == f"resnet32x4 ({name})"
    assert float(stored["kd"]["difference"]) == pytest.approx(kd_mean - kd_published, abs=1e-9)
