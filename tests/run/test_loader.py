"""Image students read uint8 batches: same maths as to_tensor, same batches with workers, seeded augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.core.names import SPLITS
from bench.core.spec import ExperimentSpec
from bench.data.images import channel_stats, resize, to_float, to_tensor
from bench.data.splits import DataConfig
from bench.run import run_spec as pipeline
from bench.run.context import RunContext
from bench.run.loader import PAD, BatchLoader, ImageInputs, augment_batch, crop_boxes, eval_batches, select_rows
from bench.run.parts import build_parts
from bench.run.workbench import Workbench
from tests.support.fakes import FakeImageTextTeacher, registered, tiny_images, tiny_splits


def _images(grey: bool = False) -> np.ndarray:
    images, _ = tiny_images(24)
    return images[..., 0].copy() if grey else images


@pytest.mark.parametrize(("grey", "size"), [(False, 12), (False, 16), (False, 7), (True, 16)])
def test_image_inputs_give_to_tensor_of_the_whole_split_row_for_row(grey: bool, size: int) -> None:
    images = _images(grey)
    mean, std = channel_stats(images)
    whole = to_tensor(images, size, mean, std)
    inputs = ImageInputs(images, size, mean, std)
    index = torch.tensor([5, 0, 23, 7, 7])
    assert len(inputs) == 24 and inputs.shape == (24, 3, size, size)
    assert torch.equal(inputs[index], whole[index])
    assert torch.equal(torch.cat(list(eval_batches(inputs, torch.device("cpu"), 5))), whole)
    subset = select_rows(inputs, torch.tensor([3, 1, 20]))
    assert isinstance(subset, ImageInputs) and torch.equal(subset[np.array([2, 0])], whole[[20, 3]])


def test_the_loader_with_two_workers_gives_the_batches_of_no_workers() -> None:
    inputs = ImageInputs(_images(), 12, (0.5,) * 3, (0.25,) * 3)
    order = torch.randperm(24, generator=torch.Generator().manual_seed(3))
    batches = [order[i : i + 5] for i in range(0, 24, 5)]
    plain = list(BatchLoader(inputs, 0, pin=False).epoch(batches))
    workers = BatchLoader(inputs, 2, pin=False)
    for _ in range(2):  # persistent workers serve a second epoch too
        parallel = list(workers.epoch(batches))
        assert len(parallel) == len(plain) == 5
        for (index_a, raw_a), (index_b, raw_b) in zip(plain, parallel, strict=True):
            assert torch.equal(index_a, index_b) and torch.equal(raw_a, raw_b)
            assert raw_a.dtype == torch.uint8 and torch.equal(raw_a, torch.from_numpy(_images()[index_a.numpy()]))


@pytest.mark.parametrize("mode", ["flip", "crop-flip", "crop-pad-flip"])
def test_augmentation_changes_the_inputs_is_seeded_and_keeps_the_shape(mode: str) -> None:
    inputs = ImageInputs(_images(), 16, (0.5,) * 3, (0.25,) * 3)
    raw = inputs.raw(np.arange(24))
    first = augment_batch(raw, inputs, mode, torch.Generator().manual_seed(0))
    again = augment_batch(raw, inputs, mode, torch.Generator().manual_seed(0))
    other = augment_batch(raw, inputs, mode, torch.Generator().manual_seed(1))
    plain = inputs.prepare(raw)
    assert first.shape == plain.shape and torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, plain) and torch.isfinite(first).all()
    assert torch.equal(augment_batch(raw, inputs, "none", torch.Generator()), plain)
    if mode == "flip":  # every image is itself or its mirror
        mirrored = torch.isclose(first, plain.flip(-1)).flatten(1).all(1)
        assert (mirrored | torch.isclose(first, plain).flatten(1).all(1)).all() and mirrored.any()


def test_crop_pad_flip_is_cifars_pad_4_random_crop_and_flip_image_by_image() -> None:
    inputs = ImageInputs(_images(), 16, (0.5,) * 3, (0.25,) * 3)
    raw = inputs.raw(np.arange(24))
    augmented = augment_batch(raw, inputs, "crop-pad-flip", torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)  # the same draws, in the same order: flips, then offsets
    flips = torch.rand(24, generator=generator) < 0.5
    offsets = torch.randint(0, 2 * PAD + 1, (24, 2), generator=generator)
    padded = torch.nn.functional.pad(resize(to_float(raw), 16), (PAD,) * 4)  # black border, as RandomCrop(padding=4)
    for image in range(24):
        top, left = offsets[image].tolist()
        crop = padded[image, :, top:top + 16, left:left + 16]
        expected = (crop.flip(-1) if flips[image] else crop) * 4 - 2  # (x - 0.5) / 0.25
        torch.testing.assert_close(augmented[image], expected)
    assert flips.any() and not flips.all() and (offsets != PAD).any()
    assert (augmented == -2).flatten(1).any(1).sum() >= 12  # shifted crops show the padding


def test_a_full_crop_without_flip_is_the_identity_map() -> None:
    generator = torch.Generator().manual_seed(0)
    theta = crop_boxes(6, torch.zeros(6, dtype=torch.bool), generator)
    assert (theta[:, 0, 0] > 0).all() and (theta[:, 0, 0] <= 1).all() and (theta[:, 1, 1] <= 1).all()
    mirrored = crop_boxes(6, torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(0))
    assert torch.equal(mirrored[:, 0, 0], -theta[:, 0, 0])  # same draws, mirrored
    assert (theta[:, :, 2].abs() <= 1 - theta[:, [0, 1], [0, 1]].abs() + 1e-6).all()  # crops stay inside


def test_a_head_student_refuses_augmentation_it_cannot_see() -> None:
    teacher, data = FakeImageTextTeacher(), tiny_splits()
    parts = build_parts("projection", "kd", {}, teacher, data)
    augmented = type(data)(data.name, data.class_names, data.train, data.val, data.test,
                           DataConfig(image_size=12, student_image_size=12, augment="flip"))
    with pytest.raises(BenchError, match="data.augment 'flip' applies to standalone students"):
        pipeline.student_inputs(parts, augmented, None)  # type: ignore[arg-type]


def _today_student_inputs(parts, data, outputs):  # noqa: ANN001, ANN202 - the code before image batches
    if parts.input_tap is not None:
        return {split: outputs.features[split][parts.input_tap] for split in SPLITS}
    size = data.config.student_image_size or data.native_size
    mean, std = channel_stats(data.train.images)
    return {split: to_tensor(data.split(split).images, size, mean, std) for split in SPLITS}


def test_a_default_standalone_run_scores_exactly_as_with_whole_split_tensors(
        tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = Workbench(RunContext(tmp_path / "cache", tmp_path / "data", "cpu"))
    data = {"student_image_size": 12, "train_limit": 96, "val_limit": 32, "test_limit": 64, "image_size": 32}
    hparams = {"batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "depth": 8, "width": 16, "alpha": 0.5,
               "temperature": 2.0}
    with registered() as teacher:
        spec = ExperimentSpec.create(teacher=teacher, student="resnet", method="kd", dataset="digits",
                                     hparams=hparams, data=data, epochs=2, seed=0)
        losses: dict[str, list[float]] = {"streamed": [], "today": []}
        streamed = pipeline.run_spec(spec, bench, "s", on_epoch=lambda e: losses["streamed"].append(e.train_loss))
        monkeypatch.setattr(pipeline, "student_inputs", _today_student_inputs)
        today = pipeline.run_spec(spec, bench, "s", on_epoch=lambda e: losses["today"].append(e.train_loss))
    assert streamed.status == today.status == "done" and len(losses["today"]) == 2
    assert streamed.test_acc == today.test_acc and streamed.val_acc == today.val_acc
    assert losses["streamed"] == losses["today"]
