"""Every registered student builds, gives the documented outputs and learns on tiny data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.train import num_params, state_size_mb
from students import HEAD, STUDENTS
from students.base import StudentContext

CONTEXT = StudentContext(num_classes=4, teacher_dim=32, image_size=12)


def tiny_batch(kind: str, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose class is readable from them, so a working student must fit them."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % CONTEXT.num_classes
    if kind == HEAD:
        centers = torch.randn(CONTEXT.num_classes, CONTEXT.teacher_dim, generator=generator) * 2
        return centers[labels] + 0.5 * torch.randn(n, CONTEXT.teacher_dim, generator=generator), labels
    images = 0.3 * torch.randn(n, 3, CONTEXT.image_size, CONTEXT.image_size, generator=generator)
    for cls in range(CONTEXT.num_classes):  # class = which quadrant is bright
        rows, cols = divmod(cls, 2)
        half = CONTEXT.image_size // 2
        images[labels == cls, :, rows * half:(rows + 1) * half, cols * half:(cols + 1) * half] += 2.0
    return images, labels


@pytest.mark.parametrize("name", STUDENTS.names())
def test_student_outputs_and_learns(name: str) -> None:
    entry = STUDENTS.entry(name)
    torch.manual_seed(0)
    student = entry.obj(CONTEXT, {})
    inputs, labels = tiny_batch(entry.kind)
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
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="6n\\+2"):
        STUDENTS.get("resnet")(CONTEXT, {"depth": 10})
