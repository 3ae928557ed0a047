"""bench track: a tiny grid's runs in a real MLflow store (SQLite backend, artifact folder) and in offline W&B run
files, read back with mlflow.search_runs and bench/track/wandb_files.py; re-exporting never duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.report.load import load_epochs, load_runs
from tests.support.fakes import registered

GRID = """
name: tracked
teacher: fake-image-text
student: [projection]
method: [scratch, kd]
dataset: digits
seeds: [0]
epochs: 3
data: {image_size: 12, train_limit: 100, val_limit: 40, test_limit: 40}
hparams: {batch_size: 32}
"""


def bench_cli(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny grid run once through `bench run` (fake teacher, digits, CPU)."""
    root = tmp_path_factory.mktemp("tracked")
    (root / "grid.yaml").write_text(GRID)
    db = f"sqlite:///{root / 'results.db'}"
    with registered():
        code, output = bench_cli("run", str(root / "grid.yaml"), "--db", db, "--cache-dir", str(root / "cache"),
                                 "--device", "cpu", "--run-dir", str(root / "runs"))
    assert code == 0, output
    return db


def test_runs_reach_mlflow_with_params_epochs_and_artifact_and_reexport_does_not_duplicate(grid_db: str,
                                                                                        tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ("track", "mlflow", "--tracking-uri", uri, "--artifact-root", str(tmp_path / "mlartifacts"), "--db", grid_db)
    code, output = bench_cli(*args)
    assert code == 0, output
    runs = load_runs(grid_db)
    assert f"{len(runs)} runs created, 0 updated" in output  # the two students and the teacher reference cell
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["tracked"], output_format="list")
    assert len(found) == len(runs) == 3
    client = mlflow.MlflowClient(uri)
    for row in runs.to_dict("records"):
        (tracked,) = [r for r in found if r.data.tags["bench.spec_key"] == row["spec_key"]]
        assert tracked.data.params["method"] == row["method"] and tracked.data.params["seed"] == str(row["seed"])
        assert tracked.data.metrics["test_acc"] == pytest.approx(row["test_acc"])
        assert tracked.data.tags["status"] == "done" and tracked.info.status == "FINISHED"
        epochs = load_epochs(grid_db, [int(row["id"])])
        history = client.get_metric_history(tracked.info.run_id, "val_acc")
        assert sorted((m.step, m.value) for m in history if m.step > 0) == sorted(
            (int(e) + 1, pytest.approx(v)) for e, v in zip(epochs["epoch"], epochs["val_acc"], strict=True))
        names = [a.path for a in client.list_artifacts(tracked.info.run_id)]
        assert names == [Path(row["artifact_path"]).name]
    code, output = bench_cli(*args)
    assert code == 0 and "0 runs created, 3 updated" in output, output
    again = mlflow.search_runs(experiment_names=["tracked"], output_format="list")
    assert len(again) == 3
    for tracked in again:  # no metric step logged twice
        history = client.get_metric_history(tracked.info.run_id, "val_acc")
        assert len(history) == len({m.step for m in history})


def test_runs_reach_offline_wandb_files_and_reexport_skips_unchanged(grid_db: str, tmp_path: Path) -> None:
    from bench.track.wandb_export import wandb_id
    from bench.track.wandb_files import read_offline_run

    code, output = bench_cli("track", "wandb", "--wandb-dir", str(tmp_path), "--db", grid_db, "--where",
                             "method != 'teacher-probe'")
    assert code == 0 and "2 runs created" in output, output
    files = sorted(tmp_path.rglob("run-*.wandb"))
    assert len(files) == 2
    runs = {row["spec_key"]: row for row in load_runs(grid_db, "method != 'teacher-probe'").to_dict("records")}
    for path in files:
        offline = read_offline_run(path)
        (row,) = [r for key, r in runs.items() if wandb_id(key) == offline.run_id]
        assert offline.project == "tracked" and offline.config["method"] == row["method"]
        assert offline.summary["test_acc"] == pytest.approx(row["test_acc"])
        epochs = load_epochs(grid_db, [int(row["id"])])
        logged = [(h["_step"], h["val_acc"]) for h in offline.history if "val_acc" in h]
        assert logged == [(int(e) + 1, pytest.approx(v)) for e, v in zip(epochs["epoch"], epochs["val_acc"],
                                                                            strict=True)]
        assert offline.artifacts == [f"student-{row['spec_key'][:16]}"]
    code, output = bench_cli("track", "wandb", "--wandb-dir", str(tmp_path), "--db", grid_db)
    assert code == 0 and "1 runs created, 0 updated" in output, output  # only the reference cell is new
    assert len(sorted(tmp_path.rglob("run-*.wandb"))) == 3


def test_track_refuses_unknown_tracker_and_missing_uri_in_one_line(grid_db: str) -> None:
    for argv, words in ((("track", "neptune", "--db", grid_db), "expected one of mlflow, wandb"),
                        (("track", "mlflow", "--db", grid_db), "--tracking-uri is required")):
        code, output = bench_cli(*argv)
        assert code == 2 and words in output and "Traceback" not in output, output
