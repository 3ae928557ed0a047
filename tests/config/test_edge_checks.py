"""Named regressions of issue 25: each refused before a row is written, with the reason in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.errors import BenchError
from bench.core.names import GRID_KIND, KIND_ATTR, SEARCH_KIND
from bench.data.splits import DataConfig, load_dataset
from bench.sweep.grid import check_kind
from bench.sweep.queue import WorkerOptions, open_storage, open_study

TINY = {"image_size": 32, "train_limit": 60, "val_limit": 20, "test_limit": 20}


@pytest.mark.parametrize(("existing", "wanted", "words"), [(SEARCH_KIND, GRID_KIND, "search study (bench study)"),
                                                           (GRID_KIND, SEARCH_KIND, "grid (bench run)")])
def test_one_kind_per_study_name(tmp_path: Path, existing: str, wanted: str, words: str) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    storage = open_storage(url, WorkerOptions())
    open_study("shared-name", storage).set_user_attr(KIND_ATTR, existing)
    check_kind(storage, "shared-name", existing)  # the same kind continues
    check_kind(storage, "another-name", wanted)  # a new name is free
    with pytest.raises(BenchError, match="another name") as raised:
        check_kind(storage, "shared-name", wanted)
    assert words in str(raised.value) and "'shared-name'" in str(raised.value)


def test_a_shape_mismatch_is_refused_before_the_probe_row(tmp_path: Path) -> None:
    """mha width 30 with 4 heads used to train the probe, store its row, then fail the cell."""
    grid = {"teacher": "effnet-lite0", "student": "mha", "method": "kd", "dataset": "digits", "epochs": 1,
            "hparams": {"width": [32, 30], "heads": 4}, "data": TINY}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    db = tmp_path / "results.db"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "grid.yaml"), "--db", f"sqlite:///{db}", "--device", "cpu",
                                      "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "field 'hparams': cell mha + kd on effnet-lite0/digits" in result.stderr  # refused when the file loads
    assert "divisible by heads 4" in result.stderr
    assert not db.exists()


@pytest.mark.parametrize(("data", "words"), [
    ({"train_limit": 5}, "5 train image(s) for 10 classes"),
    ({"val_fraction": 0.01, "val_limit": 1}, "leaves 1 val image(s)"),
    ({"labeled_limit": 3}, "labeled_limit 3 must lie in [10,"),
    ({"train_limit": 50, "labeled_limit": 60}, "must lie in [10, 50]"),
])
def test_splits_that_would_train_or_score_on_nothing_are_refused(data: dict, words: str) -> None:
    with pytest.raises(BenchError) as raised:
        load_dataset("digits", DataConfig(**data))
    assert words in str(raised.value)
    assert len(load_dataset("digits", DataConfig(train_limit=10, val_limit=2, labeled_limit=10)).train.labels) == 10


def test_a_tiny_val_fraction_is_refused_when_the_file_loads(tmp_path: Path) -> None:
    from bench.config.grid import load_grid

    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"teacher": "effnet-lite0", "student": "projection",
                                                     "method": "kd", "dataset": "digits",
                                                     "data": {"val_fraction": 0.0001}}))
    with pytest.raises(BenchError, match=r"data.val_fraction.*\[0.01, 1\)"):
        load_grid(tmp_path / "g.yaml")


@pytest.mark.parametrize(("extra", "words"), [
    ({"hparams": {"lr": 0.01}}, "also searched under 'search.lr'"),
    ({"enqueue": [{"lr": 0.5}]}, "outside the searched range [0.001, 0.1]"),
    ({"search": {}}, "every trial would run the same cell"),
])
def test_study_search_space_mistakes_are_refused(tmp_path: Path, extra: dict, words: str) -> None:
    from bench.config.study import load_study_file

    valid = {"teacher": "effnet-lite0", "student": "projection", "method": "kd", "dataset": "digits",
             "search": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**valid, **extra}))
    with pytest.raises(BenchError) as raised:
        load_study_file(tmp_path / "s.yaml")
    assert words in str(raised.value)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**valid, "enqueue": [{"lr": 0.05}]}))
    assert load_study_file(tmp_path / "s.yaml").enqueue == [{"lr": 0.05}]
