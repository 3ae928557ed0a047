"""Every registered student builds, gives the documented outputs and learns on tiny data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bench.core.names import HEAD
from bench.core.registries import STUDENTS
from bench.run.train import num_params, state_size_mb
from bench.students.base import StudentContext

CONTEXT = StudentContext(num_classes=4, teacher_dim=32, image_size=12)


TAP_SHAPES = {"pooled": (CONTEXT.teacher_dim,), "feature_map": (CONTEXT.teacher_dim, 3, 3)}


def tiny_batch(kind: str, n: int = 64, shape: tuple[int, ...] = (CONTEXT.teacher_dim,)
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose class is readable from them, so a working student must fit them."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % CONTEXT.num_classes
    if kind == HEAD:
        centers = torch.randn(CONTEXT.num_classes, *shape, generator=generator) * 2
        return centers[labels] + 0.5 * torch.randn(n, *shape, generator=generator), labels
    images = 0.3 * torch.randn(n, 3, CONTEXT.image_size, CONTEXT.image_size, generator=generator)
    for cls in range(CONTEXT.num_classes):  # class = which quadrant is bright
        rows, cols = divmod(cls, 2)
        half = CONTEXT.image_size // 2
        images[labels == cls, :, rows * half:(rows + 1) * half, cols * half:(cols + 1) * half] += 2.0
    return images, labels


HEAVY = {"resnet32x4", "vgg13", "shufflenetv1", "shufflenetv2", "wrn-40-2", "wrn-16-2", "resnet8x4", "resnet56", "vgg8",
         "mobilenetv2"}  # 7-60 s each on 64 images


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name
                                  for name in STUDENTS.names()])
def test_student_outputs_and_learns(name: str) -> None:
    entry = STUDENTS.entry(name)
    torch.manual_seed(0)
    shape = TAP_SHAPES[entry.obj.input_tap(TAP_SHAPES)] if entry.card.kind == HEAD else None
    student = entry.obj(replace(CONTEXT, input_shape=shape), {})
    # the heavy published networks fit 16 images (4 a class): 64 cost them 20-60 s each, checking nothing more
    inputs, labels = tiny_batch(entry.card.kind, n=16 if name in HEAVY else 64, shape=shape or (CONTEXT.teacher_dim,))
    out = student(inputs)
    assert out["logits"].shape == (len(labels), CONTEXT.num_classes)
    assert out["embedding"].shape == (len(labels), student.embed_dim)
    assert num_params(student) > 0 and state_size_mb(student) > 0
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(student(inputs)["logits"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], f"{name} did not learn: {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_size_mb_is_bytes_of_saved_state() -> None:
    student = STUDENTS.get("bottleneck")(CONTEXT, {"hidden_dim": 16, "bottleneck_dim": 8})
    floats = sum(t.numel() for t in student.state_dict().values())
    assert floats * 4 / 1e6 <= state_size_mb(student) <= floats * 4 / 1e6 + 0.01


def test_hparams_change_the_model() -> None:
    small = STUDENTS.get("resnet")(CONTEXT, {"depth": 8, "width": 8})
    big = STUDENTS.get("resnet")(CONTEXT, {"depth": 14, "width": 16})
    assert num_params(big) > 4 * num_params(small)
    assert small.embed_dim == 32 and big.embed_dim == 64
    from bench.core.errors import BenchError

    with pytest.raises(BenchError, match="6n\\+2"):
        STUDENTS.get("resnet")(CONTEXT, {"depth": 10})


def test_timm_student_by_name() -> None:
    context = StudentContext(num_classes=4, teacher_dim=32, image_size=32)
    student = STUDENTS.get("timm:test_resnet")(context, {})
    out = student(torch.randn(2, 3, 32, 32))
    assert out["logits"].shape == (2, 4) and out["embedding"].shape == (2, student.embed_dim) == (2, 96)
    assert out["feature_map"].shape[:2] == (2, 96) and STUDENTS.entry("timm:test_resnet").card.kind == "standalone"
    from bench.core.errors import BenchError

    with pytest.raises(BenchError, match="did you mean: timm:resnet18"):
        STUDENTS.entry("timm:resnet18x")


def test_vit_shrink_targets_a_fraction_of_the_teacher() -> None:
    from bench.students.vit import vit_params

    teacher_params = 4_650_000
    context = StudentContext(num_classes=10, teacher_dim=1280, image_size=16, teacher_params=teacher_params)
    student = STUDENTS.get("vit")(context, {"shrink": 0.4})
    assert 0.37 * teacher_params < num_params(student) < 0.43 * teacher_params
    assert len(student.blocks) == 4 and student.embed_dim % 4 == 0
    plain = STUDENTS.get("vit")(context, {"depth": 3, "width": 48, "heads": 3})
    assert num_params(plain) == vit_params(16, 4, 3, 48, 2.0, 10)
    out = plain(torch.randn(2, 3, 16, 16))
    assert out["attn.2"].shape == (2, 3, 17, 17) and out["hidden.0"].shape == (2, 16, 48)
    assert torch.allclose(out["attn.0"].sum(-1), torch.ones(2, 3, 17))


def test_head_students_read_the_teacher_tap_they_declare() -> None:
    assert STUDENTS.get("mha").input_tap(["pooled", "tokens", "feature_map"]) == "tokens"
    assert STUDENTS.get("mha").input_tap(["pooled", "feature_map"]) == "feature_map"
    assert STUDENTS.get("cbam").input_tap(["pooled", "tokens"]) is None
    tokens = STUDENTS.get("mha")(replace(CONTEXT, input_shape=(9, 32)), {"width": 16, "heads": 2})
    as_map = STUDENTS.get("mha")(replace(CONTEXT, input_shape=(32, 3, 3)), {"width": 16, "heads": 2})
    assert tokens(torch.randn(2, 9, 32))["attn.0"].shape == as_map(torch.randn(2, 32, 3, 3))["attn.0"].shape
    cbam = STUDENTS.get("cbam")(replace(CONTEXT, input_shape=(32, 3, 3)), {"blocks": 3})
    assert cbam(torch.randn(2, 32, 3, 3))["feature_map"].shape == (2, 128, 3, 3)
    deeper = STUDENTS.get("densenet")(CONTEXT, {"depth": 16, "growth": 12})
    assert num_params(deeper) > num_params(STUDENTS.get("densenet")(CONTEXT, {}))
