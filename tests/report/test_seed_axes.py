"""Issue 29: data seeds as seed axes. A grid's `seed_axes` varies split_seed (and labeled_seed) like `seeds`; the
report averages over them like the student seed, pairs each method run with scratch at the same seed and data seeds,
tests over data draws and says in the caption which sources of variance the replicates cover (real runs on digits)."""

from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

import pandas as pd
import pytest
import torch
import yaml
from scipy.stats import ttest_rel

from bench.config.grid import load_grid
from bench.core.errors import BenchError
from bench.data.splits import DataConfig, load_dataset
from bench.report.build import build_report
from bench.report.markdown import render
from bench.report.runs import run_table
from bench.report.stats import data_seed_roles, variance_sources
from bench.run.context import RunContext
from bench.run.parts import masked_train_labels
from bench.sweep.grid import run_grid
from tests.support.rows import query

SPLITS, SEEDS = [0, 1, 2], [0, 1]
GRID = {"name": "axes", "teacher": "effnet-lite0", "student": "resnet", "method": ["scratch", "kd"],
        "dataset": "digits", "seeds": SEEDS, "epochs": 4, "seed_axes": {"split_seed": SPLITS},
        "data": {"image_size": 32, "train_limit": 200, "val_limit": 30, "test_limit": 100},
        "hparams": {"depth": 8, "width": 8, "batch_size": 32, "lr": 0.01}}


def _write(path: Path, grid: dict) -> Path:
    path.write_text(yaml.safe_dump(grid))
    return path


def test_seed_axes_multiply_the_cells_and_keep_older_keys(tmp_path: Path) -> None:
    specs = load_grid(_write(tmp_path / "axes.yaml", GRID)).specs
    assert sorted((s.method, s.seed, s.data_dict["split_seed"]) for s in specs) == sorted(
        (m, seed, split) for m in ("scratch", "kd") for seed in SEEDS for split in SPLITS)
    plain = {**GRID, "seeds": [0], "data": {**GRID["data"], "split_seed": 1}}
    plain.pop("seed_axes")
    same = {s.key for s in load_grid(_write(tmp_path / "plain.yaml", plain)).specs}
    assert same <= {s.key for s in specs}  # split_seed 1 via seed_axes is the spec a fixed split_seed 1 gives
    assert "labeled_seed" not in DataConfig(labeled_limit=10).as_dict()  # unset: older few-label keys hold


def test_labeled_seed_picks_the_subset_apart_from_the_split() -> None:
    def labelled(config: DataConfig) -> tuple[list[int], list[int]]:
        data = load_dataset("digits", config)
        masked = masked_train_labels(data)  # what a run's CE reads: -1 outside the labelled rows
        return sorted(torch.nonzero(masked >= 0).flatten().tolist()), list(data.val.labels[:20])

    few = {"train_limit": 200, "labeled_limit": 30, "split_seed": 4}
    default, same, other = (labelled(DataConfig(**few, **extra)) for extra in ({}, {"labeled_seed": 4},
                                                                                {"labeled_seed": 5}))
    assert len(default[0]) == 30 and default == same  # unset: the split seed picks the labels, as before
    assert other[0] != default[0] and other[1] == default[1]  # another labelled subset of the same split


@pytest.mark.parametrize(("axes", "data", "message"), [
    ({"labeled_seed": [0, 1]}, {}, "field 'seed_axes.labeled_seed': the labeled subset exists only under"),
    ({"split_seed": [0, 1]}, {"split_seed": 3}, "field 'seed_axes.split_seed': data.split_seed is also set"),
    ({"split": [0]}, {}, "'split' is not a seed axis; known: split_seed, labeled_seed"),
    ({}, {"labeled_seed": 2}, "field 'data.labeled_seed': it picks the rows data.labeled_limit keeps"),
    ({}, {"data_variants": [{"labeled_seed": 1}]}, "field 'data_variants[0].labeled_seed': it picks the rows"),
])
def test_bad_seed_axes_are_one_line(tmp_path: Path, axes: dict, data: dict, message: str) -> None:
    data = dict(data)  # the parameter is shared: pop from a copy
    variants = {"data_variants": data.pop("data_variants")} if "data_variants" in data else {}
    grid = {**GRID, "seed_axes": axes, "data": {**GRID["data"], **data}, **variants}
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(".", r"\.").replace("[", r"\[")):
        load_grid(_write(tmp_path / "bad.yaml", grid))


@pytest.mark.usefixtures("one_thread")
def test_report_averages_over_split_and_seed_and_pairs_by_both(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    run_grid(load_grid(_write(tmp_path / "axes.yaml", GRID)), db,
             RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    rows = query(db, "SELECT method, seed, data_config, test_acc FROM runs WHERE method IN ('scratch', 'kd') "
                     "AND status = 'done'")
    assert len(rows) == 2 * len(SEEDS) * len(SPLITS)
    score = {(r["method"], r["seed"], yaml.safe_load(str(r["data_config"]))["split_seed"]): r["test_acc"]
             for r in rows}
    per_split = {m: [mean(score[(m, seed, split)] for seed in SEEDS) for split in SPLITS] for m in ("scratch", "kd")}
    assert len({round(v, 6) for v in per_split["scratch"]}) > 1  # the splits do differ: averaging them matters

    data = build_report(db, tmp_path / "report")
    summary = data.summary.set_index("method")
    for method in ("scratch", "kd"):  # one setting per method: the split is not a setting
        assert (data.summary["method"] == method).sum() == 1
        row = summary.loc[method]
        assert (row["seeds"], row["data_draws"], row["student_seeds"]) == (3, 3, 2)
        assert row["score_mean"] == pytest.approx(mean(per_split[method]), abs=1e-9)
        assert row["score_std"] == pytest.approx(stdev(per_split[method]), abs=1e-9)
        assert not row["setting"]

    (kd,) = data.gains[data.gains["method"] == "kd"].to_dict("records")
    expected = ttest_rel(per_split["kd"], per_split["scratch"])  # over splits, each the mean of its seeds
    assert (kd["n"], kd["draws"], kd["seeds"], kd["varied"]) == (3, 3, 2, "split_seed")
    assert kd["gain"] == pytest.approx(mean(per_split["kd"]) - mean(per_split["scratch"]), abs=1e-9)
    assert kd["t"] == pytest.approx(expected.statistic, rel=1e-9)
    assert kd["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    pooled = ttest_rel([score[("kd", s, p)] for s in SEEDS for p in SPLITS],
                       [score[("scratch", s, p)] for s in SEEDS for p in SPLITS])
    assert pooled.statistic != pytest.approx(kd["t"], rel=1e-3)  # six runs as independent pairs: another test

    columns, listed = run_table(db, "method = 'kd'")
    settings = [row[columns.index("setting")] for row in listed]
    assert sorted(settings) == sorted(f"split_seed={split}" for split in SPLITS for _ in SEEDS)  # runs: one each

    text = render(data)
    assert "| kd | 3 draws x 2 seeds |" in text
    assert "n=3 data draws x 2 seeds" in text
    assert "Replicates vary the student seed" in text and "split_seed (the val split, the train rows" in text
    assert " is fixed" not in text  # no labelled subset here: nothing else to name


def test_caption_names_the_data_seeds_each_grid_varies() -> None:
    few = {"labeled_limit": 40}
    assert data_seed_roles([{**few, "split_seed": 0}, {**few, "split_seed": 1}]) == ("split_seed, labeled_seed", "")
    assert data_seed_roles([{**few, "split_seed": 0, "labeled_seed": s} for s in (0, 1)]) == ("labeled_seed",
                                                                                              "split_seed")
    assert data_seed_roles([{"split_seed": 2}, {"split_seed": 2}]) == ("", "split_seed")
    caption = variance_sources(pd.DataFrame({"varied": ["labeled_seed", ""], "fixed": ["split_seed", "split_seed"]}))
    assert "labeled_seed (which train rows keep their label" in caption and "split_seed is fixed" in caption
    assert "in the rows whose n counts data draws" in caption  # one row varies no data seed
    fixed = variance_sources(pd.DataFrame({"varied": [""], "fixed": ["split_seed"]}))
    assert fixed.startswith("Replicates vary the student seed (its initialisation, data order and augmentation) only")
