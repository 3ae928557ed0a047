"""Loss formulas against hand computations; every (student, method) pair trains and keeps the teacher out."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.core.registries import METHODS, STUDENTS
from bench.data.images import to_tensor
from bench.methods.base import MethodContext
from bench.methods.losses import FeatureRegressor, hinton_kd
from bench.run.parts import RunParts, build_parts, incompatibility, teacher_tap_names
from tests.support.fakes import CLASSES, FakeImageTextTeacher, tiny_splits


def test_kd_matches_hand_computation_with_t_squared() -> None:
    student = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[2.0, 0.0, 1.0]])
    temperature = 2.0

    def softmax(values: list[float]) -> list[float]:
        exps = [math.exp(v / temperature) for v in values]
        return [e / sum(exps) for e in exps]

    p_teacher, p_student = softmax([2.0, 0.0, 1.0]), softmax([1.0, 2.0, 0.5])
    kl = sum(t * math.log(t / s) for t, s in zip(p_teacher, p_student, strict=True))
    assert float(hinton_kd(student, teacher, temperature)) == pytest.approx(temperature**2 * kl, rel=1e-6)
    assert float(hinton_kd(teacher, teacher, temperature)) == pytest.approx(0.0, abs=1e-6)


def test_kd_method_weights_and_terms() -> None:
    method = METHODS.get("kd")(MethodContext(3, 8, 4), {"alpha": 0.25, "temperature": 3.0})
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    teacher_logits = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([1, 2])
    terms = method({"logits": logits}, {"logits": teacher_logits}, labels)
    assert set(terms) == {"ce", "kd"}
    expected_ce = torch.nn.functional.cross_entropy(logits, labels)
    expected_kd = hinton_kd(logits, teacher_logits, 3.0)
    assert torch.allclose(terms["ce"], expected_ce) and torch.allclose(terms["kd"], expected_kd)
    assert torch.allclose(method.total(terms), 0.75 * expected_ce + 0.25 * expected_kd)


def test_feature_regressor_mse_and_cosine() -> None:
    regressor = FeatureRegressor(2, 2, "mse")
    with torch.no_grad():
        regressor.projection.weight.copy_(torch.eye(2))
        regressor.projection.bias.zero_()
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]])
    assert float(regressor(student, teacher)) == pytest.approx(((1 - 3) ** 2 + 0) / 2)
    regressor.loss = "cosine"
    assert float(regressor(student, teacher)) == pytest.approx(0.0, abs=1e-7)
    assert float(regressor(student, torch.tensor([[0.0, 5.0]]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mse' or 'cosine"):
        FeatureRegressor(2, 2, "l1")


FAKE = FakeImageTextTeacher()
FAKE_TAPS = teacher_tap_names(FAKE)
PAIRS = [
    (student, method)
    for student in STUDENTS.names()
    for method in METHODS.names()
    if incompatibility(student, method, {}, FAKE.name, FAKE_TAPS, FAKE.modality) is None
    and not METHODS.entry(method).card.joint_space  # image-text retrieval methods: tests/run/test_retrieval.py
]


def teacher_outputs(parts: RunParts, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fake teacher's taps, computed WITH a graph back to its parameters, plus probe-like logits."""
    outputs = FAKE.features(images, parts.feature_taps)
    probe = torch.linspace(-1, 1, FAKE.embed_dim * CLASSES).view(FAKE.embed_dim, CLASSES)
    outputs["logits"] = outputs["pooled"] @ probe + 3 * F.one_hot(labels, CLASSES)
    return outputs


def test_every_method_trains_with_some_student() -> None:
    joint_space = {entry.name for entry in METHODS if entry.card.joint_space}  # tests/run/test_retrieval.py
    assert {method for _, method in PAIRS} == set(METHODS.names()) - joint_space
    assert {student for student, _ in PAIRS} == set(STUDENTS.names())
    assert ("vit", "tinybert") in PAIRS and ("projection", "clip") in PAIRS and ("mha", "attention") in PAIRS


TRAIN_HPARAMS = {"sp": {"sp_weight": 1000.0}}  # the paper's 3000: SP dominates 20 steps on the fake data
# the published CIFAR networks (deep, batch-normed) need more than 20 steps of CRD or SP on the fake data to lose 30%
CIFAR_NETS = {"resnet8x4", "resnet32x4", "resnet20", "resnet56", "wrn-16-2", "wrn-40-2", "vgg8", "vgg13",
              "mobilenetv2", "shufflenetv1", "shufflenetv2"}
CIFAR_BATCH = 12  # images they train on (of the 40): see the pair test


SINGLE_POSITION_AT = {"mobilenetv2", "vgg8", "vgg13"}  # their last map is 1x1 at the fake data's 12 px: AT refused


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("student_name", "method_name"), PAIRS)
def test_pair_trains_and_gradients_never_reach_the_teacher(student_name: str, method_name: str) -> None:
    torch.manual_seed(0)
    data = tiny_splits()
    if method_name == "attention" and student_name in SINGLE_POSITION_AT:
        from bench.core.errors import BenchError

        with pytest.raises(BenchError, match="compare at 1x1"):  # its AT term would be 0 whatever it learns
            build_parts(student_name, method_name, {}, FAKE, data)
        return
    parts = build_parts(student_name, method_name, TRAIN_HPARAMS.get(method_name, {}), FAKE, data)
    student, method = parts.student, parts.method
    # the published CIFAR networks train on 12 of the 40 images (3 a class): a step of resnet32x4 on all 40 is about
    # a second of arithmetic here, and what is checked (every term finite, gradients reach the student and the
    # method but never the teacher, the loss falls) does not need more
    count = CIFAR_BATCH if student_name in CIFAR_NETS else len(data.train.labels)
    images = to_tensor(data.train.images[:count], data.native_size, FAKE.preprocess.mean, FAKE.preprocess.std)
    labels = torch.from_numpy(data.train.labels[:count])
    FAKE.requires_grad_(True)  # so that any gradient reaching the teacher would show up
    try:
        outputs = teacher_outputs(parts, images, labels)
        teacher = {name: outputs[name] for name in parts.teacher_targets} | {"indices": torch.arange(len(labels))}
        inputs = outputs[parts.input_tap].detach() if parts.input_tap else images  # cached features
        optimizer = torch.optim.AdamW(list(student.parameters()) + list(method.parameters()), lr=3e-3)
        totals = []
        for step in range(60 if student_name in CIFAR_NETS and method_name in ("crd", "sp") else 20):
            terms = method(student(inputs), teacher, labels)
            assert all(torch.isfinite(v) for v in terms.values())
            assert set(terms) == set(method.term_weights())
            total = method.total(terms)
            optimizer.zero_grad()
            total.backward()
            if step == 0:
                assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
                assert all(p.grad is not None for p in method.parameters())
                assert all(p.grad is None for p in FAKE.parameters())
            optimizer.step()
            totals.append(float(total.detach()))
    finally:
        FAKE.requires_grad_(False)
    assert totals[-1] < 0.7 * totals[0], f"{student_name}+{method_name}: {totals[0]:.3f} -> {totals[-1]:.3f}"


def test_methods_count_their_own_parameters() -> None:
    context = MethodContext(num_classes=3, teacher_dim=10, student_dim=4)
    assert METHODS.get("kd")(context, {}).num_params() == 0
    assert METHODS.get("feature")(context, {}).num_params() == 4 * 10 + 10
    assert METHODS.get("combined")(context, {}).num_params() == 4 * 10 + 10
