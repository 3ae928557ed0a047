"""studies/published/: the published CIFAR-100 figures name our students and methods and cite their source."""

from __future__ import annotations

import csv

from bench.core.registries import METHODS, STUDENTS
from tests.support.paths import REPO


def test_published_rows_name_registered_units_and_every_pair_has_both_baselines() -> None:
    with open(REPO / "studies" / "published" / "repdistiller-cifar100.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * 6 + 11  # 8 pairs x 6 methods, 11 architectures trained alone
    scratch = {row["student"]: float(row["test_acc"]) for row in rows if row["method"] == "scratch"}
    for row in rows:
        STUDENTS.check(row["student"])
        METHODS.check(row["method"])
        assert row["source"].startswith("Tian et al.") and row["selection"] == "best" and row["dataset"] == "cifar-100"
        assert 50.0 < float(row["test_acc"]) < 80.0
        if row["method"] != "scratch":
            assert row["teacher"] in scratch and row["student"] in scratch
    assert scratch["resnet32x4"] == 79.42 and scratch["resnet8x4"] == 72.50
    crd = {(r["teacher"], r["student"]): float(r["test_acc"]) for r in rows if r["method"] == "crd"}
    assert all(crd[pair] > scratch[pair[1]] for pair in crd)  # the published table's claim, as transcribed
