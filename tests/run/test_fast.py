"""GPU speed paths run on the CPU with the same code: bf16 autocast, channels_last, compile, resident tensors."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from bench.core.registries import METHODS, STUDENTS
from bench.data.splits import DataConfig
from bench.methods.base import MethodContext
from bench.run.fast import TrainOptions, fits_on_device, float_outputs, resident
from bench.run.loader import ImageInputs
from bench.run.train import TrainData, TrainResult, predict_logits, train_student
from bench.students.base import StudentContext
from tests.support.fakes import tiny_images

CPU = torch.device("cpu")
HPARAMS = {"lr": 3e-3, "weight_decay": 0.0, "batch_size": 16, "depth": 8, "width": 16}


def _image_data() -> TrainData:
    """40 tiny 12 px images per split, read as image inputs at 16 px."""
    images, labels = tiny_images(40)
    inputs = ImageInputs(images, 16, (0.2, 0.2, 0.2), (0.15, 0.15, 0.15))
    return TrainData({s: inputs for s in ("train", "val", "test")},
                     {s: torch.from_numpy(labels) for s in ("train", "val", "test")})


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return STUDENTS.entry("resnet").obj(StudentContext(4, 8, 16), HPARAMS)


def _train(options: TrainOptions, epochs: int = 1, student: nn.Module | None = None) -> tuple[TrainResult, list]:
    student = student or _resnet()
    method = METHODS.get("scratch")(MethodContext(4, 8, student.embed_dim), HPARAMS)
    losses: list[float] = []
    result = train_student(student, method, _image_data(), HPARAMS, epochs, 0, CPU,
                           on_epoch=lambda record: losses.append(record.train_loss), options=options)
    return result, losses


def test_bf16_autocast_trains_with_finite_losses_close_to_fp32_but_not_equal(one_thread: None) -> None:
    (_, fp32_losses), (bf16, bf16_losses) = _train(TrainOptions()), _train(TrainOptions(precision="bf16"))
    assert all(torch.isfinite(torch.tensor(bf16_losses))) and bf16.test_acc is not None
    assert bf16_losses != fp32_losses  # autocast did run in bf16
    assert bf16_losses[0] == pytest.approx(fp32_losses[0], rel=0.05)
    assert all(p.dtype == torch.float32 for p in _resnet().parameters())  # master weights stay fp32


def test_bf16_logits_reach_the_method_in_fp32() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = float_outputs(nn.Linear(4, 3)(torch.ones(2, 4)))
    assert outputs.dtype == torch.float32
    nested = float_outputs({"a": [torch.ones(1, dtype=torch.bfloat16)], "n": torch.ones(1, dtype=torch.long)})
    assert nested["a"][0].dtype == torch.float32 and nested["n"].dtype == torch.long


def test_channels_last_gives_the_same_logits_and_training_to_float_noise(one_thread: None) -> None:
    student, inputs = _resnet(), _image_data().inputs["test"]
    assert TrainOptions(channels_last="on").use_channels_last(student, CPU)
    assert not TrainOptions().use_channels_last(student, CPU)  # auto: only on CUDA
    assert not TrainOptions(channels_last="on").use_channels_last(nn.Linear(3, 3), CPU)  # no convs
    assert TrainOptions().use_channels_last(student, torch.device("cuda"))
    plain = predict_logits(student, inputs, CPU)
    fast = predict_logits(student.to(memory_format=torch.channels_last), inputs, CPU,
                          options=TrainOptions(channels_last="on"))
    assert torch.allclose(plain, fast, atol=1e-5)
    (_, plain_losses), (_, fast_losses) = _train(TrainOptions(channels_last="off")), _train(
        TrainOptions(channels_last="on"))
    assert fast_losses == pytest.approx(plain_losses, abs=1e-5)


def test_channels_last_training_leaves_a_plain_contiguous_student(one_thread: None) -> None:
    student = _resnet()
    _train(TrainOptions(channels_last="on"), student=student)
    assert all(p.is_contiguous() for p in student.parameters())


def test_loader_workers_and_augmentation_keep_or_change_training_as_they_should(one_thread: None) -> None:
    _, plain = _train(TrainOptions())
    _, workers = _train(TrainOptions(loader_workers=2))
    assert workers == plain  # the same batches, the same order, the same maths
    _, flipped = _train(TrainOptions(augment="crop-flip"))
    _, again = _train(TrainOptions(augment="crop-flip"))
    assert flipped == again and flipped != plain  # seeded, and it changes what the student sees


def test_cached_teacher_outputs_go_to_the_device_only_when_they_fit() -> None:
    cuda = torch.device("cuda")
    assert fits_on_device(400, cuda, free_bytes=1000) and not fits_on_device(600, cuda, free_bytes=1000)
    assert not fits_on_device(1, CPU)  # on the CPU they are already where they are read
    tensors = {"logits": torch.zeros(10, 3)}
    assert resident(tensors, CPU, "auto")["logits"] is tensors["logits"]
    assert resident(tensors, cuda, "off")["logits"] is tensors["logits"]  # off: never moved
    assert resident(tensors, cuda, "auto", free_bytes=100)["logits"] is tensors["logits"]  # 120 bytes > 50


def test_training_knobs_stay_out_of_the_spec_key_at_their_defaults() -> None:
    assert DataConfig().as_dict() == DataConfig(precision="fp32", augment="none", compile=False).as_dict()
    assert DataConfig(precision="bf16").as_dict()["precision"] == "bf16"
    assert DataConfig(augment="crop-flip").as_dict()["augment"] == "crop-flip"
    options = TrainOptions.from_config(DataConfig(precision="bf16", loader_workers=3))
    assert options.precision == "bf16" and options.loader_workers == 3 and options.augment == "none"


@pytest.mark.slow
def test_compile_trains_like_eager(one_thread: None) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile (inductor) needs a C compiler on the CPU; none found")
    from torch._dynamo.utils import counters

    counters.clear()
    _, compiled = _train(TrainOptions(compile=True), student=_fresh_logits())
    assert counters["stats"]["unique_graphs"] > 0  # the training forward did go through the compiler
    _, eager = _train(TrainOptions(), student=_fresh_logits())
    assert compiled == pytest.approx(eager, rel=1e-4)


class _Logits(nn.Module):
    """A tiny linear student that returns the dict students return."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.embed_dim = 4

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(images), "embedding": self.body(images)}


def _fresh_logits() -> nn.Module:
    torch.manual_seed(0)
    return _Logits(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)))


def test_feature_batches_that_stay_on_the_host_reach_the_training_device() -> None:
    """Features not made resident (too big, or resident_features: off) are gathered on the host and copied to the
    training device per batch (this broke on CUDA: the batch stayed on the CPU). `meta` stands in for the GPU."""
    from types import SimpleNamespace

    from bench.run.train import TrainData, _batches

    features = torch.randn(10, 4)
    data = TrainData({"train": features}, {"train": torch.arange(10)})
    loop = SimpleNamespace(data=data, generator=torch.Generator().manual_seed(0), batch_size=4, loader=None,
                           device=torch.device("meta"))
    batches = list(_batches(loop, 1))  # type: ignore[arg-type]
    assert [len(index) for index, *_ in batches] == [4, 4, 2]
    assert all(inputs.device.type == "meta" and inputs.shape == (len(index), 4) for index, inputs, *_ in batches)
    assert all(targets is None and mix is None for _, _, targets, mix in batches)  # fixed views: the loop's own
