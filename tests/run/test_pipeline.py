"""The one run pipeline: build_parts serves retrieval, the method card alone decides joint space, one size rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.names import HEAD, STANDALONE
from bench.core.registries import METHODS
from bench.core.spec import ExperimentSpec
from bench.core.taps import IMAGE_EMBED, POOLED
from bench.methods.base import MethodContext
from bench.methods.joint import JointCosine
from bench.run.context import RunContext
from bench.run.parts import build_parts
from bench.run.record import trained_fields
from bench.run.run_spec import run_spec
from bench.run.train import TrainResult, num_params, state_size_mb
from bench.run.workbench import Workbench
from tests.support.dataset_fixtures import write_coco
from tests.support.fakes import DIM, FakeImageTextTeacher, registered, tiny_splits
from tests.support.fakes import JOINT_DIM as EMBED

RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall")


def test_build_parts_sizes_a_joint_space_method_from_image_embed_and_gives_class_less_data_one_class() -> None:
    teacher, data = FakeImageTextTeacher(), tiny_splits()
    assert teacher.embed_dim == DIM != EMBED  # pooled and joint widths differ, so the test can tell them apart
    parts = build_parts("projection", "joint-cosine", {}, teacher, data)
    assert parts.feature_taps == (IMAGE_EMBED, POOLED) and parts.input_tap == POOLED
    assert parts.method.context.teacher_dim == EMBED and parts.method.projection.out_features == EMBED
    assert build_parts("projection", "feature", {}, teacher, data).method.context.teacher_dim == DIM
    captions_only = replace(data, class_names=())  # a retrieval dataset has no classes
    student = build_parts("projection", "joint-cosine", {}, teacher, captions_only).student
    assert student(torch.zeros(2, DIM))["logits"].shape == (2, 1)


def test_the_method_card_alone_decides_joint_space(tmp_path: Path) -> None:
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    with registered() as teacher, METHODS.temporarily("cosine-uncarded", JointCosine, MethodCard("features")):
        for method, dataset in (("cosine-uncarded", "coco-captions"), ("joint-cosine", "digits")):
            spec = ExperimentSpec.create(teacher=teacher, student="projection", method=method, dataset=dataset,
                                         epochs=1, seed=0)
            with pytest.raises(BenchError, match=f"method {method!r} does not fit dataset {dataset!r}"):
                run_spec(spec, bench, "s")


def test_method_parts_count_at_inference_only_for_joint_space_methods() -> None:
    teacher, student = FakeImageTextTeacher(), nn.Linear(4, 3)
    method = METHODS.get("joint-cosine")(MethodContext(1, 8, 3), {})
    result = TrainResult(epochs=(), val_acc=0.5, test_acc=None, epoch_seconds=1.0, train_images_per_s=2.0,
                         peak_mem_mb=3.0)
    joint = trained_fields(student, method, teacher, STANDALONE, True, result)
    assert joint["inference_params"] == num_params(student) + method.num_params() == 15 + 32
    assert joint["inference_size_mb"] == pytest.approx(state_size_mb(student) + state_size_mb(method))
    head = trained_fields(student, method, teacher, HEAD, False, result)
    assert head["method_params"] == 32 and head["inference_params"] == 15 + teacher.num_params()
    assert head["inference_size_mb"] == pytest.approx(state_size_mb(student) + state_size_mb(teacher))


def test_a_retrieval_search_trial_never_scores_the_test_split(tmp_path: Path, one_thread: None) -> None:
    write_coco(tmp_path / "data", n_train=16, n_val=8)
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    with registered() as teacher:
        spec = ExperimentSpec.create(teacher=teacher, student="projection", method="joint-cosine",
                                     dataset="coco-captions", hparams={"batch_size": 8, "lr": 3e-3,
                                                                       "weight_decay": 0.0},
                                     data={"decode_size": 16, "val_fraction": 0.25}, epochs=1, seed=0)
        trial = run_spec(spec, bench, "s", evaluate_test=False)
        final = run_spec(spec, bench, "s")
        backbone = bench.teacher(teacher).num_params()
    assert trial.status == final.status == "done" and trial.val_acc == final.val_acc
    assert all(getattr(trial, name) is None for name in RECALLS) and trial.pct_of_teacher is None
    assert all(getattr(final, name) is not None for name in RECALLS) and final.pct_of_teacher is not None
    assert final.inference_params == final.params + final.method_params + backbone  # the projection is kept
