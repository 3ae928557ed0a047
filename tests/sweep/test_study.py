"""Optuna studies through the one trial function: pruning, multi-objective values, re-runs on test, bad files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
import yaml
from rich.console import Console

from bench.config.study import load_study_file
from bench.core.errors import BenchError
from bench.run.context import RunContext
from bench.sweep.queue import WorkerOptions
from bench.sweep.search import run_study
from bench.sweep.worker import run_worker
from tests.support.paths import REPO

BASE = {
    "teacher": "effnet-lite0", "student": "projection", "method": "scratch", "dataset": "digits", "epochs": 3,
    "data": {"image_size": 64, "student_image_size": 16, "train_limit": 400, "val_limit": 100, "test_limit": 200},
    "hparams": {"batch_size": 32},
    "search": {"lr": {"type": "float", "low": 1.0e-6, "high": 0.1, "log": True}},
    "sampler": "random",
}


def write_study(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / f"{fields.get('name', 'study')}.yaml"
    path.write_text(yaml.safe_dump({**BASE, **fields}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunContext]:
    """CPU with one thread (tiny heads train faster than threads sync) and one feature cache for the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield RunContext(cache_dir=tmp_path_factory.mktemp("study-cache"), device="cpu")
    torch.set_num_threads(threads)


def rows(db: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_median_pruner_prunes_the_hopeless_trials(tmp_path: Path, db_url: str, context: RunContext) -> None:
    path = write_study(tmp_path, name="pruned", trials=4, pruner={"name": "median", "n_startup_trials": 2},
                       enqueue=[{"lr": 0.03}, {"lr": 0.02}, {"lr": 1.0e-6}, {"lr": 2.0e-6}], final={"seeds": [1]})
    summary = run_study(load_study_file(path), db_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    assert summary.states == {"COMPLETE": 2, "PRUNED": 2}
    search = rows(db_url, "SELECT r.status, r.hparams, r.test_acc, r.val_acc, count(e.id) FROM runs r "
                          "LEFT JOIN run_epochs e ON e.run_id = r.id WHERE r.study = 'pruned' "
                          "GROUP BY r.id ORDER BY r.trial_number")
    assert [row[0] for row in search] == ["done", "done", "pruned", "pruned"]
    assert all(row[2] is None for row in search)  # the search never evaluated the test split
    assert all(row[4] == 3 for row in search[:2]) and all(row[4] == 1 for row in search[2:])  # pruned at epoch 0
    assert min(row[3] for row in search[:2]) > 2 * max(row[3] for row in search[2:])
    final = rows(db_url, "SELECT student, seed, test_acc, hparams FROM runs WHERE study = 'pruned/final' "
                         "AND method = 'scratch'")
    assert len(final) == 1 and final[0][1] == 1 and final[0][2] > 0.4
    assert summary.best[0][2]["lr"] in (0.03, 0.02) and summary.final_test_acc == [final[0][2]]


@pytest.mark.slow
def test_multi_objective_study_on_postgres_stores_both_values(tmp_path: Path, postgres_url: str,
                                                             context: RunContext) -> None:
    import optuna

    path = write_study(tmp_path, name="pareto", student=["projection", "bottleneck"], trials=3, epochs=2,
                       objectives={"val_acc": "maximize", "size_mb": "minimize"}, final={"seeds": [1], "top": 2})
    summary = run_study(load_study_file(path), postgres_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    study = optuna.load_study(study_name="pareto", storage=postgres_url)  # the same URL opens it
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    stored = {row[0]: row[1:] for row in rows(postgres_url, "SELECT spec_key, val_acc, size_mb FROM runs "
                                                            "WHERE study = 'pareto'")}
    for trial in complete:
        assert trial.values == pytest.approx(list(stored[trial.user_attrs["spec_key"]]))
    front = {t.number for t in study.best_trials}
    assert {number for number, _, _ in summary.best} <= front and summary.best
    final = rows(postgres_url, "SELECT count(*), min(test_acc) FROM runs WHERE study = 'pareto/final' "
                               "AND student != 'linear-probe'")
    assert final[0][0] == len(summary.best) and final[0][1] > 0.3

    study.set_user_attr("n_trials", 4)  # a worker elsewhere joins with only the URL and the name
    joined = run_worker("pareto", postgres_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    assert (joined.kind, joined.counts.done, joined.counts.failed) == ("study", 1, 0)
    reloaded = optuna.load_study(study_name="pareto", storage=postgres_url)
    assert sum(t.state.name == "COMPLETE" and len(t.values) == 2 for t in reloaded.trials) == 4


@pytest.mark.parametrize(("fields", "message"), [
    ({"serach": {}}, "field 'serach': unknown field"),
    ({"search": {"temprature": {"type": "float", "low": 1, "high": 2}}}, "did you mean: temperature?"),
    ({"search": {"lr": {"type": "float", "low": 1, "high": 0.5}}}, "field 'search.lr': a float parameter needs low"),
    ({"objectives": {"val_acc": "maximize", "size_mb": "minimize"}, "pruner": "median"}, "cannot prune"),
    ({"final": {"seeds": [0, 1]}}, "field 'final.seeds': must not contain the search seed 0"),
    ({"sampler": "grid"}, "the grid sampler needs every search parameter categorical"),
    ({"student": "nope"}, "field 'student'"),
])
def test_bad_study_files_are_one_line_errors(tmp_path: Path, fields: dict, message: str) -> None:
    path = write_study(tmp_path, method=["scratch", "kd"], **fields)
    with pytest.raises(BenchError) as error:
        load_study_file(path)
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_cli_study_error_exits_2_without_touching_the_database(tmp_path: Path) -> None:
    path = write_study(tmp_path, search={"lr": {"type": "categorical"}})
    db = tmp_path / "results.db"
    result = subprocess.run([sys.executable, "-m", "bench", "study", str(path), "--db", f"sqlite:///{db}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "needs a non-empty 'choices' list" in result.stderr
    assert "Traceback" not in result.stderr and not db.exists()


def test_final_scratch_re_runs_the_best_setting_without_its_teacher_and_pairs_in_the_gain_table(
        tmp_path: Path, db_url: str, context: RunContext) -> None:
    """Issue 29: `final.scratch` gives a study a scratch arm: the best kd trial's student at the same lr, batch and
    seeds, so the report's gain table has the study's pair."""
    from bench.report.build import build_report

    path = write_study(tmp_path, name="armed", method="kd", trials=2, epochs=2, enqueue=[{"lr": 0.03}, {"lr": 1e-5}],
                       final={"seeds": [1, 2], "scratch": True})
    summary = run_study(load_study_file(path), db_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    final = rows(db_url, "SELECT method, seed, hparams, test_acc FROM runs WHERE study = 'armed/final' "
                         "AND method IN ('kd', 'scratch') "
                         "ORDER BY method, seed")
    assert [(row[0], row[1]) for row in final] == [("kd", 1), ("kd", 2), ("scratch", 1), ("scratch", 2)]
    kd, scratch = (yaml.safe_load(row[2]) for row in (final[0], final[2]))
    assert kd["lr"] == scratch["lr"] == summary.best[0][2]["lr"] == 0.03 and "alpha" not in scratch
    assert len(summary.final_test_acc) == 2  # the study's own result is the best trial's, not its baseline's
    gains = build_report(db_url, tmp_path / "report").gains
    pair = gains[(gains["method"] == "kd") & (gains["n"] == 2)]
    assert len(pair) == 1 and pair["baseline_mean"].iloc[0] == pytest.approx(sum(r[3] for r in final[2:]) / 2)


def test_a_study_stored_before_a_field_was_added_still_matches_at_that_fields_default(tmp_path: Path) -> None:
    """Fields added since a study was stored (final.scratch, recipes, data.coco_split) do not refuse its resumption
    at their defaults; set to something else, or any stored value changed, the config differs."""
    from bench.sweep.search import same_config

    model = load_study_file(write_study(tmp_path, name="old", trials=3))
    config, changed = model.model_dump(mode="json"), model.model_dump(mode="json", exclude_defaults=True)
    stored = {**config, "final": {k: v for k, v in config["final"].items() if k != "scratch"},
              "data": {k: v for k, v in config["data"].items() if k != "coco_split"}}
    del stored["recipes"]
    assert same_config(stored, config, changed)
    assert not same_config({**stored, "trials": 4}, config, changed)
    armed = load_study_file(write_study(tmp_path, name="old", trials=3, final={"scratch": True}))
    assert not same_config(stored, armed.model_dump(mode="json"), armed.model_dump(mode="json", exclude_defaults=True))


def test_a_study_searches_the_optimizer_and_keeps_unread_protocol_knobs_out_of_the_spec(tmp_path: Path) -> None:
    import optuna

    from bench.config.study import suggest_spec

    path = write_study(tmp_path, hparams={"batch_size": 32, "schedule": "multistep", "milestones": "2",
                                          "momentum": 0.5},
                       search={"optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
                               "lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True}})
    model = load_study_file(path)
    sgd = suggest_spec(optuna.trial.FixedTrial({"optimizer": "sgd", "lr": 0.05}), model).hparams_dict
    adamw = suggest_spec(optuna.trial.FixedTrial({"optimizer": "adamw", "lr": 0.05}), model).hparams_dict
    assert (sgd["optimizer"], sgd["momentum"], sgd["schedule"], sgd["milestones"], sgd["lr"]) == \
        ("sgd", 0.5, "multistep", "2", 0.05)
    assert "optimizer" not in adamw and "momentum" not in adamw and adamw["milestones"] == "2"
    with pytest.raises(BenchError, match="field 'hparams': schedule: multistep needs milestones"):
        load_study_file(write_study(tmp_path, hparams={"schedule": "multistep"}))


def test_a_grid_sampler_ends_the_search_when_its_grid_is_drawn(tmp_path: Path, db_url: str,
                                                              context: RunContext) -> None:
    """GridSampler stops the study from `tell` once every point is drawn; Optuna refused that outside its optimize
    loop (RuntimeError). The search now ends there: 2 grid points, a budget of 4, 2 trials, both points once."""
    path = write_study(tmp_path, name="gridded", trials=4, epochs=1, sampler={"name": "grid", "seed": 0},
                       search={"lr": {"type": "categorical", "choices": [0.01, 0.03]}}, final={"seeds": [1]})
    summary = run_study(load_study_file(path), db_url, context, WorkerOptions(run_dir=tmp_path / "runs"),
                        Console(stderr=True))
    assert summary.states == {"COMPLETE": 2}
    drawn = rows(db_url, "SELECT hparams FROM runs WHERE study = 'gridded' ORDER BY trial_number")
    assert sorted(yaml.safe_load(row[0])["lr"] for row in drawn) == [0.01, 0.03]
