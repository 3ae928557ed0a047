"""The deployable model gives the run's own eval-path outputs from [0, 1] images at the dataset's native size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.names import HEAD
from bench.deploy.model import ImageNorm, deployable, images_to_input
from bench.run.cost import deployable_for_run
from bench.run.train import predict_logits
from tests.support.trained_runs import DIGITS, trained_run


@pytest.mark.parametrize("student", ["resnet", "projection", "cbam"])
def test_deployable_logits_equal_the_runs_own_eval_path_on_real_test_images(tmp_path: Path, student: str,
                                                                           one_thread: None) -> None:
    hparams = {"depth": 8, "width": 4} if student == "resnet" else {"width": 8, "blocks": 1}
    run = trained_run(tmp_path, student, hparams=hparams)
    model = deployable_for_run(run.parts, run.teacher, run.data)
    images = images_to_input(run.data.test.images)
    assert images.shape[1:] == (3, 8, 8) and 0.0 <= float(images.min()) <= float(images.max()) <= 1.0
    expected = predict_logits(run.parts.student, run.inputs["test"], run.bench.device)
    with torch.inference_mode():
        got = model(images)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < 1e-5
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_a_head_student_carries_its_backbone_and_a_standalone_one_does_not(tmp_path: Path, one_thread: None) -> None:
    run = trained_run(tmp_path, "projection")
    with_backbone = deployable_for_run(run.parts, run.teacher, run.data)
    alone = deployable(run.parts.student, run.parts.method, run.teacher, "standalone", None,
                       ImageNorm(8, (0.5,) * 3, (0.25,) * 3), False)
    assert sum(p.numel() for p in with_backbone.parameters()) > run.teacher.num_params()
    assert sum(p.numel() for p in alone.parameters()) == sum(p.numel() for p in run.parts.student.parameters())


def test_a_head_student_without_its_tap_is_refused(tmp_path: Path, one_thread: None) -> None:
    run = trained_run(tmp_path, "projection")
    with pytest.raises(BenchError, match="input_tap"):
        deployable(run.parts.student, run.parts.method, run.teacher, HEAD, None, ImageNorm(8, (0.0,) * 3,
                                                                                           (1.0,) * 3), False)


def test_digits_config_reads_at_a_teacher_size_other_than_native() -> None:
    assert DIGITS.image_size != 8  # the head students' path resizes 8 px digits, so the resize is exercised
