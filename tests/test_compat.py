"""Specs whose student cannot give what the method reads, or whose teacher lacks a tap, fail at load time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.config.grid import load_grid
from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.registries import METHODS, STUDENTS, TEACHERS
from bench.run.parts import incompatibility
from tests.support.fakes import registered

EFFNET_TAPS = TEACHERS.entry("effnet-lite0").card.taps


@pytest.fixture
def extra_teachers() -> Iterator[None]:
    """A pooled-only teacher and the fake image-text ViT-like teacher, registered for this test only."""
    with (TEACHERS.temporarily("pooled-only-test", lambda weights, **_: None, TeacherCard("test", ("pooled",))),
          registered("fake-image-text")):
        yield


def grid(tmp_path: Path, teacher: str, student: str, method: str, hparams: str = "{}") -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"teacher: {teacher}\nstudent: {json.dumps(student)}\nmethod: {method}\ndataset: digits\n"
                    f"hparams: {hparams}\n")
    return path


@pytest.mark.parametrize(("teacher", "student", "method", "message"), [
    ("effnet-lite0", "projection", "attention", "student 'projection' cannot be trained with method 'attention': "
                                                "it gives no ['feature_map']"),
    ("effnet-lite0", "timm:resnet10t", "attention", "it gives no ['feature_map']"),
    ("effnet-lite0", "resnet", "clip", "method 'clip' needs teacher outputs ['image_embed', 'text']"),
    ("effnet-lite0", "vit", "tinybert", "needs teacher outputs ['attn_scores', 'hidden'] that 'effnet-lite0'"),
    ("effnet-lite0", "resnet", "tinybert", "it gives no ['attn_scores']"),
    ("effnet-lite0", "mha", "attention", "'mha' cannot be trained with method 'attention'"),
    ("pooled-only-test", "mha", "kd", "student 'mha' reads teacher tap tokens or feature_map that 'pooled-only-test'"),
    ("pooled-only-test", "cbam", "scratch", "reads teacher tap feature_map"),
    ("pooled-only-test", "resnet", "attention", "method 'attention' needs teacher outputs ['feature_map']"),
    ("effnet-lite0", "resnet", "combined", "method 'combined' needs teacher outputs ['image_embed', 'text']"),
])
@pytest.mark.usefixtures("extra_teachers")
def test_incompatible_specs_rejected_at_load(tmp_path: Path, teacher: str, student: str, method: str,
                                             message: str) -> None:
    hparams = '{combine: "kd:0.5,clip:1"}' if method == "combined" else "{}"
    with pytest.raises(BenchError) as error:
        load_grid(grid(tmp_path, teacher, student, method, hparams))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.usefixtures("extra_teachers")
def test_image_text_and_transformer_methods_load_with_a_teacher_that_has_the_taps(tmp_path: Path) -> None:
    loaded = load_grid(grid(tmp_path, "fake-image-text", "vit", "[clip, tinybert, attention, feature]",
                            '{feature_pairs: uniform, at_layers: uniform}'))
    assert len(loaded.specs) == 4
    assert len(load_grid(grid(tmp_path, "fake-image-text", "mha", "[attention, kd]")).specs) == 2
    with pytest.raises(BenchError, match="feature pairs 'embedding'"):
        load_grid(grid(tmp_path, "fake-image-text", "vit", "feature", '{feature_pairs: "embedding"}'))


def test_load_time_check_matches_the_pairs_that_train_on_effnet() -> None:
    """The grid accepts exactly the pairs `incompatibility` accepts, and that set is what the issue promises."""
    accepted = {(s, m) for s in STUDENTS.names() for m in METHODS.names()
                if incompatibility(s, m, {}, "effnet-lite0", EFFNET_TAPS, None) is None}
    cifar_nets = {"resnet8x4", "resnet32x4", "resnet20", "resnet56", "wrn-16-2", "wrn-40-2", "vgg8", "vgg13",
                  "mobilenetv2", "shufflenetv1", "shufflenetv2"}  # the published CIFAR CNNs: conv maps at every stage
    conv_students = {"resnet", "densenet", "cbam-resnet", "cbam"} | cifar_nets
    assert {s for s, m in accepted if m == "attention"} == conv_students
    assert not {m for _, m in accepted} & {"clip", "tinybert"}
    assert {s for s, m in accepted if m == "crd"} == set(STUDENTS.names())
