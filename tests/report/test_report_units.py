"""Report building blocks on hand-made data: Pareto front, paired tests, recall columns, empty databases."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.report.build import build_report
from bench.report.plots import pareto_front
from bench.report.stats import baseline_gains, format_p, paired_test
from bench.report.write import parse_formats
from bench.store.results import Store
from tests.support.records import record


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = pd.DataFrame({"size": [1.0, 2.0, 2.0, 3.0, 4.0, 0.5], "acc": [0.5, 0.7, 0.6, 0.65, 0.9, 0.4]})
    front = pareto_front(points, "size", "acc")
    assert list(front.index) == [5, 0, 1, 4]


def test_paired_test_needs_two_pairs() -> None:
    from scipy.stats import ttest_rel

    assert all(math.isnan(v) for v in paired_test([0.5], [0.4]))
    t, p = paired_test([0.5, 0.7, 0.8], [0.4, 0.5, 0.75])
    expected = ttest_rel([0.5, 0.7, 0.8], [0.4, 0.5, 0.75])
    assert (t, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert format_p(float("nan")) == "n/a" and format_p(0.0001) == "p<0.001" and format_p(0.0312) == "p=0.031"


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = dict(dataset="d", teacher="t", student="s", student_kind="head", epochs=2, status="done",
                pct_of_teacher=None, size_mb=1.0)
    return pd.DataFrame([{**base, **row} for row in rows])


def test_gains_pair_by_seed_and_say_n_a_with_one_seed() -> None:
    runs = _runs([
        dict(method="scratch", seed=0, test_acc=0.50), dict(method="scratch", seed=1, test_acc=0.60),
        dict(method="kd", seed=0, test_acc=0.55), dict(method="kd", seed=1, test_acc=0.70),
        dict(method="kd", seed=2, test_acc=0.99),  # no scratch partner: not paired
        dict(method="feature", seed=0, test_acc=0.40),
        dict(method="feature", seed=1, test_acc=0.1, status="failed"),  # failed: not paired
    ])
    gains = baseline_gains(runs).set_index("method")
    assert gains.loc["kd", "n"] == 2 and gains.loc["kd", "gain"] == pytest.approx(0.075)
    assert gains.loc["kd", "method_mean"] == pytest.approx(0.625)
    assert gains.loc["feature", "n"] == 1 and math.isnan(gains.loc["feature", "p"])
    assert gains.loc["feature", "gain"] == pytest.approx(-0.10)


def _db_with_recall(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    for seed, acc in enumerate([0.9, 0.8]):
        store.save_run(record(f"k{seed}", seed=seed, test_acc=acc))
    connection = sqlite3.connect(tmp_path / "r.db")
    connection.execute("UPDATE runs SET mean_recall = 0.40 WHERE spec_key = 'k0'")
    connection.execute("UPDATE runs SET mean_recall = 0.60 WHERE spec_key = 'k1'")
    connection.commit()
    connection.close()
    return url


def test_retrieval_recall_is_the_score_when_present(tmp_path: Path) -> None:
    data = build_report(_db_with_recall(tmp_path), tmp_path / "out")
    (matrix,) = data.matrices
    assert matrix.metric == "mean_recall"
    (cell,) = matrix.cells.values()
    assert cell.mean == pytest.approx(0.5) and cell.text() == "50.0 ± 14.1" and cell.best


def test_runs_without_recall_column_use_test_accuracy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url).save_run(record("a", test_acc=0.75))
    data = build_report(url, tmp_path / "out")
    assert data.matrices[0].metric == "test_acc" and data.summary["score_mean"].tolist() == [0.75]


def test_empty_or_missing_database_is_one_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    with pytest.raises(BenchError, match="no runs to report: database not found"):
        build_report(url, tmp_path / "out")
    assert not (tmp_path / "e.db").exists()  # a report never creates a database
    Store(url)
    with pytest.raises(BenchError, match="no runs to report: no rows in the database"):
        build_report(url, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parse_formats() -> None:
    assert parse_formats("md, HTML,md") == ("md", "html")
    with pytest.raises(BenchError, match="choose from md, html, csv, tex"):
        parse_formats("docx")


def test_matrices_split_by_epoch_budget_and_mark_best_per_teacher_column() -> None:
    from bench.report.tables import matrices, summarise, teacher_references

    rows = []
    for teacher, bonus in (("big", 0.1), ("small", -0.1)):
        rows.append(dict(teacher=teacher, student="linear-probe", method="teacher-probe", epochs=0, seed=0,
                         test_acc=0.8 + bonus))
        for epochs in (1, 3):
            for seed in (0, 1):
                rows.append(dict(teacher=teacher, student="s", method="kd", epochs=epochs, seed=seed,
                                 test_acc=0.5 + bonus + 0.1 * epochs + 0.01 * seed))
                rows.append(dict(teacher=teacher, student="s", method="scratch", epochs=epochs, seed=seed,
                                 test_acc=0.55 + 0.01 * seed))
    runs = _runs(rows)
    runs["inference_size_mb"] = runs["epoch_seconds"] = runs["params"] = 1.0
    tables = matrices(summarise(runs), teacher_references(runs))
    assert [(m.epochs, m.teachers, [r[4] for r in m.rows]) for m in tables] == [
        (1, ["big", "small"], ["kd", "scratch"]), (3, ["big", "small"], ["kd", "scratch"])]
    one, three = tables
    assert one.references == pytest.approx({"big": 0.9, "small": 0.7})
    assert one.cells[(0, "big")].best and not one.cells[(1, "big")].best  # kd 0.705 > scratch 0.555
    assert one.cells[(1, "small")].best and not one.cells[(0, "small")].best  # scratch 0.555 > kd 0.505
    assert three.cells[(0, "small")].best and three.cells[(0, "small")].text() == "70.5 ± 0.7"
    assert three.cells[(0, "small")].seeds == 2 and three.cells[(0, "small")].detail() == "n=2"
