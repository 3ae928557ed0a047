"""One data config: DataConfig declares each field once; the `data:` model and the spec rules derive from it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from bench.config.base import DataModel, SweepModel
from bench.config.grid import GridModel, load_grid
from bench.config.study import StudyModel
from bench.core.errors import BenchError
from bench.data.splits import DATA_KNOBS, UNKEYED_DEFAULTS, DataConfig


def test_every_data_field_has_one_declaration_the_model_and_knobs_follow() -> None:
    names = [f.name for f in fields(DataConfig)]
    assert list(DATA_KNOBS) == names and list(DataModel.model_fields) == names
    for f in fields(DataConfig):
        assert DATA_KNOBS[f.name].default == f.default == DataModel.model_fields[f.name].default
    assert DataModel().config() == DataConfig()


def test_unkeyed_fields_leave_spec_keys_alone_at_their_defaults() -> None:
    assert set(DataConfig().as_dict()).isdisjoint(UNKEYED_DEFAULTS)
    for name, default in UNKEYED_DEFAULTS.items():
        assert DATA_KNOBS[name].default == default
    assert DataModel(kd_targets="in-sample").config().as_dict()["kd_targets"] == "in-sample"


@pytest.mark.parametrize(("data", "message"), [
    ({"kd_targets": "soft"}, "kd_targets must be one of: oof, in-sample"),
    ({"teacher_reference": "maybe"}, "teacher_reference must be one of: probe, zero-shot"),
    ({"image_size": 4}, "image_size must be an integer in [8, 4096] or null"),
])
def test_every_data_field_is_checked_by_its_knob(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DataModel(**data)


def test_grid_and_study_files_share_one_base_model() -> None:
    shared = set(SweepModel.model_fields)
    assert {"teacher", "student", "method", "dataset", "data", "hparams", "weights"} <= shared
    assert issubclass(GridModel, SweepModel) and issubclass(StudyModel, SweepModel)
    assert GridModel.model_fields["data"].annotation is StudyModel.model_fields["data"].annotation is DataModel


def test_a_missing_study_file_is_named_a_study_file(tmp_path: Path) -> None:
    from bench.config.study import load_study_file

    with pytest.raises(BenchError, match="^study file not found: "):
        load_study_file(tmp_path / "nope.yaml")
    with pytest.raises(BenchError, match="^grid file not found: "):
        load_grid(tmp_path / "nope.yaml")
