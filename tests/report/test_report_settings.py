"""A matrix cell is one setting: grids that vary hparams, study search trials, CIs, labels in progress lines."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from bench.core.spec import ExperimentSpec, differing_hparams, label_with, setting_labels, short_value
from bench.report.build import build_report
from bench.report.markdown import render
from bench.report.runs import run_table
from bench.store.records import RunRecord
from bench.store.results import Store
from tests.support.records import record

GRID, SEARCH = "g", "s"
KD = {(1, 0): 0.61, (1, 1): 0.67, (8, 0): 0.72, (8, 1): 0.70}  # (temperature, seed) -> test_acc
SCRATCH = {(1e-3, 0): 0.58, (1e-3, 1): 0.60, (1e-2, 0): 0.30, (1e-2, 1): 0.35}  # (lr, seed) -> test_acc
FINAL = {1: 0.75, 2: 0.79}  # the search's best trial re-run on test over seeds 1, 2


def _run(key: str, study: str, method: str, seed: int, hparams: dict, test_acc: float | None, **extra) -> RunRecord:
    return record(key, study=study, teacher="t", student="resnet", method=method, seed=seed, hparams=hparams,
                  test_acc=test_acc, **extra)


def _search_study(db_url: str) -> None:
    """An Optuna study marked as a `bench study` search: three trials, the best at T=4."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=SEARCH, storage=db_url, direction="maximize")
    study.set_user_attr("bench_kind", "study")
    for temperature in (2, 4, 2):
        study.enqueue_trial({"temperature": temperature})
    study.optimize(lambda trial: trial.suggest_categorical("temperature", [2, 4]) / 10, n_trials=3)


@pytest.fixture()
def grid_db(tmp_path: Path) -> str:
    """Two temperatures x two seeds (one lr) of kd, scratch at two lrs, one 1-seed cell, a search and its final."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    for (temperature, seed), acc in KD.items():
        store.save_run(_run(f"kd{temperature}-{seed}", GRID, "kd", seed, {"lr": 1e-3, "temperature": temperature},
                            acc))
    for (lr, seed), acc in SCRATCH.items():
        store.save_run(_run(f"sc{lr}-{seed}", GRID, "scratch", seed, {"lr": lr}, acc))
    store.save_run(_run("fit0", GRID, "fitnet", 0, {"lr": 1e-3}, 0.5))
    for seed, temperature in enumerate((2, 4, 2)):  # search trials: val only, test_acc NULL
        store.save_run(_run(f"search{seed}", SEARCH, "kd", 0, {"lr": 1e-3, "temperature": temperature, "x": seed},
                            None, trial_number=seed))
    for seed, acc in FINAL.items():
        store.save_run(_run(f"final{seed}", f"{SEARCH}/final", "kd", seed, {"lr": 1e-3, "temperature": 4}, acc))
    _search_study(url)
    return url


def _expected_ci(scores: list[float]) -> tuple[float, float]:
    from scipy.stats import t

    mean, half = statistics.mean(scores), t.ppf(0.975, len(scores) - 1) * statistics.stdev(scores)
    half /= math.sqrt(len(scores))
    return mean - half, mean + half


def test_each_setting_is_its_own_row_with_a_t_interval(grid_db: str, tmp_path: Path) -> None:
    data = build_report(grid_db, tmp_path / "out")
    kd = data.summary[(data.summary["method"] == "kd") & (data.summary["study"] == GRID)].set_index("setting")
    assert sorted(kd.index) == ["T=1", "T=8"]
    for temperature in (1, 8):
        scores = [KD[(temperature, seed)] for seed in (0, 1)]
        row = kd.loc[f"T={temperature}"]
        low, high = _expected_ci(scores)
        assert row["seeds"] == 2 and row["score_mean"] == pytest.approx(statistics.mean(scores))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        (matrix,) = data.matrices
        index = next(i for i, r in enumerate(matrix.rows) if r[4] == "kd" and r[5] == f"T={temperature}")
        cell = matrix.cells[(index, "t")]
        assert cell.seeds == 2 and cell.ci_text() == f"[{low * 100:.1f}, {high * 100:.1f}]"
    report = render(data)
    assert "95% CI, t over seeds" in report
    rows = [line for line in report.splitlines() if "| kd | T=" in line and "(n=" in line]
    assert len(rows) == 3 and all("(n=2" in line for line in rows)  # T=1, T=4 (s/final), T=8


def test_one_seed_cell_has_no_interval(grid_db: str, tmp_path: Path) -> None:
    data = build_report(grid_db, tmp_path / "out")
    (matrix,) = data.matrices
    index = next(i for i, r in enumerate(matrix.rows) if r[4] == "fitnet")
    cell = matrix.cells[(index, "t")]
    assert cell.seeds == 1 and cell.ci_text() == "" and cell.text() == "50.0"
    (line,) = [row for row in render(data).splitlines() if "| fitnet |" in row and "(n=" in row]
    assert "| 50.0 (n=1)" in line and "[" not in line and "± 0.0" not in line


def test_search_trials_stay_out_of_the_matrix_but_final_reruns_are_in(grid_db: str, tmp_path: Path) -> None:
    data = build_report(grid_db, tmp_path / "out")
    assert SEARCH not in set(data.summary["study"]) and "x" not in str(list(data.summary["setting"]))
    (final,) = data.summary[data.summary["study"] == f"{SEARCH}/final"].to_dict("records")
    assert final["setting"] == "T=4" and final["seeds"] == 2
    assert final["score_mean"] == pytest.approx(statistics.mean(FINAL.values()))
    assert SEARCH not in set(data.gains.get("study", pd.Series(dtype=str)))
    (study,) = [s for s in data.studies if s.name == SEARCH]
    assert study.kind == "study" and len(study.best) == 1 and study.best[0].params == {"temperature": 4}
    report = render(data)
    assert "best trial #" in report and "parameters T=4" in report
    assert "study search trials: 3 runs of s" in report


def test_gain_pairs_only_the_same_setting_and_seed(grid_db: str, tmp_path: Path) -> None:
    data = build_report(grid_db, tmp_path / "out")
    gains = data.gains[data.gains["method"] == "kd"].set_index("setting")
    for temperature in (1, 8):
        row = gains.loc[f"T={temperature}"]
        diffs = [KD[(temperature, seed)] - SCRATCH[(1e-3, seed)] for seed in (0, 1)]  # scratch at the same lr
        assert row["n"] == 2 and row["gain"] == pytest.approx(statistics.mean(diffs))
        assert row["baseline_mean"] == pytest.approx(statistics.mean([SCRATCH[(1e-3, s)] for s in (0, 1)]))
    final = gains.loc["T=4"]
    assert final["n"] == 1 and final["gain"] == pytest.approx(FINAL[1] - SCRATCH[(1e-3, 1)])  # only seed 1 pairs


def test_bench_runs_names_the_differing_hparams(grid_db: str) -> None:
    columns, rows = run_table(grid_db, "method = 'kd' AND study = 'g'")
    settings = sorted(dict(zip(columns, row, strict=True))["setting"] for row in rows)
    assert settings == ["T=1", "T=1", "T=8", "T=8"]


def test_progress_labels_differ_where_hparams_differ() -> None:
    specs = [ExperimentSpec.create(teacher="t", student="s", method="kd", dataset="d", epochs=1, seed=0,
                                   hparams={"temperature": t, "lr": lr, "batch_size": 32})
             for t in (1, 8) for lr in (1e-4, 1e-2)]
    assert differing_hparams(specs) == ["temperature", "lr"]
    labels = [label_with(spec, differing_hparams(specs)) for spec in specs]
    assert len(set(labels)) == 4 and labels[0] == "t/s/kd/d seed=0 T=1, lr=1e-4"
    scratch = ExperimentSpec.create(teacher="t", student="s", method="scratch", dataset="d", epochs=1, seed=0,
                                    hparams={"lr": 1e-4})
    by_key = setting_labels([*specs, scratch])
    assert by_key[scratch.key] == scratch.label()  # alone in its group: nothing differs
    assert [by_key[s.key] for s in specs] == labels
    assert [short_value(v) for v in (1e-4, 0.01, 8.0, 3, 0.5, "adam")] == ["1e-4", "0.01", "8", "3", "0.5", "adam"]


def test_enqueued_grid_trials_carry_their_label() -> None:
    import optuna

    from bench.sweep.grid import enqueue_cells

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    specs = [ExperimentSpec.create(teacher="t", student="s", method="kd", dataset="d", epochs=1, seed=0,
                                   hparams={"temperature": t}) for t in (1, 8)]
    assert enqueue_cells(study, specs, set) == 2
    assert sorted(t.user_attrs["label"] for t in study.trials) == ["t/s/kd/d seed=0 T=1", "t/s/kd/d seed=0 T=8"]


def _curves(train_acc: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.DataFrame([dict(id=i, dataset="d", teacher="t", student="s", method="kd", epochs=2, seed=i,
                              study="g", hparams={"lr": 1e-3}, data_config={}) for i in (1, 2)])
    epochs = pd.DataFrame([dict(run_id=i, epoch=e, train_loss=9.0, val_acc=0.5 + 0.1 * e + 0.02 * i,
                                loss_terms={"ce": 1.0 - 0.1 * e, "kd": 2.0 + i}, seconds=1.0)
                           for i in (1, 2) for e in (0, 1)])
    if train_acc:
        epochs["train_acc"] = [0.6, 0.8, 0.7, None]  # the migration's column: nullable
    return runs, epochs


@pytest.mark.parametrize("train_acc", [True, False])
def test_learning_curves_plot_train_accuracy_and_unweighted_terms(train_acc: bool, tmp_path: Path) -> None:
    from bench.report.plots import _curve_means, learning_curves

    runs, epochs = _curves(train_acc)
    means = _curve_means(runs, epochs, "d").set_index("epoch")
    assert list(means["term:kd"]) == pytest.approx([3.5, 3.5]) and list(means["term:ce"]) == pytest.approx([1.0, 0.9])
    assert "train_loss" not in means  # the weighted total is not what the curves show
    if train_acc:
        assert list(means["train_acc"]) == pytest.approx([0.65, 0.8])  # a NULL epoch is left out of the mean
    else:
        assert means["train_acc"].isna().all()
    plot = learning_curves(runs, epochs, "d", tmp_path)
    assert plot is not None and plot.png.stat().st_size > 5_000
    assert ("training accuracy" in plot.caption) == train_acc and "unweighted loss term" in plot.caption
