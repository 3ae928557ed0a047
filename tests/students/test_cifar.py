"""The CIFAR students have the published parameter counts (100 classes, within 2%) and train on 32x32 images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.core.registries import STUDENTS
from bench.run.train import num_params
from bench.students.base import StudentContext
from bench.students.cifar import BUILDERS, PUBLISHED_PARAMS

CIFAR100 = StudentContext(num_classes=100, teacher_dim=1, image_size=32)


def test_every_cifar_architecture_has_a_published_count() -> None:
    assert set(BUILDERS) == set(PUBLISHED_PARAMS) == {
        "resnet8x4", "resnet32x4", "resnet20", "resnet56", "wrn-16-2", "wrn-40-2", "vgg8", "vgg13", "mobilenetv2",
        "shufflenetv1", "shufflenetv2"}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_one_and_a_step_trains(name: str) -> None:
    torch.manual_seed(0)
    student = STUDENTS.get(name)(CIFAR100, {})
    published = PUBLISHED_PARAMS[name] * 1e6
    assert abs(num_params(student) - published) <= 0.02 * published, f"{name}: {num_params(student):,}"
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    out = student(images)
    assert out["logits"].shape == (4, 100) and out["embedding"].shape == (4, student.embed_dim)
    assert out["feature_map"].shape[1] == student.embed_dim and "hidden.2" in out
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    before = [p.detach().clone() for p in student.parameters()]
    loss = F.cross_entropy(out["logits"], labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert 3.0 < float(loss.detach()) < 8.0  # about ln(100) at initialisation
    changed = sum(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    assert changed == len(before)  # every parameter gets a gradient
