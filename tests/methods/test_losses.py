"""Each distillation formula against a hand computation on fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.registries import METHODS
from bench.methods.base import MethodContext
from bench.methods.contrastive import clip_losses
from bench.methods.losses import (
    attention_map,
    attention_matrix_loss,
    attention_transfer,
    info_nce,
    rkd_angle,
    rkd_distance,
    similarity_preserving,
    soft_cross_entropy,
)
from bench.methods.pairs import PairRegressor, expand_taps, layer_mapping


def smooth_l1(a: list[float], b: list[float]) -> float:
    return sum(0.5 * (x - y) ** 2 if abs(x - y) < 1 else abs(x - y) - 0.5 for x, y in zip(a, b, strict=True)) / len(a)


def test_rkd_distance_by_hand_and_scale_invariant() -> None:
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # distances 1, 1, sqrt 2
    teacher = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])  # distances 2, 4, sqrt 20
    s = [0, 1, 1, 1, 0, math.sqrt(2), 1, math.sqrt(2), 0]
    t = [0, 2, 4, 2, 0, math.sqrt(20), 4, math.sqrt(20), 0]
    s_mean, t_mean = sum(s) / 6, sum(t) / 6
    expected = smooth_l1([x / s_mean for x in s], [x / t_mean for x in t])
    assert float(rkd_distance(student, teacher)) == pytest.approx(expected, rel=1e-5)
    assert float(rkd_distance(7.0 * student, 0.1 * teacher)) == pytest.approx(expected, rel=1e-5)
    assert float(rkd_distance(3.0 * teacher, teacher)) == pytest.approx(0.0, abs=1e-7)


def test_rkd_angle_by_hand_and_scale_invariant() -> None:
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    # the only non-trivial cosines: angle at each vertex of the triangle (each counted twice, signs aside)
    assert float(rkd_angle(student, 5.0 * student)) == pytest.approx(0.0, abs=1e-7)
    loss = float(rkd_angle(student, teacher))
    assert float(rkd_angle(0.2 * student, 9.0 * teacher)) == pytest.approx(loss, rel=1e-5)

    def cosines(points: list[tuple[float, float]]) -> list[float]:
        values = []
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    u = (points[i][0] - points[j][0], points[i][1] - points[j][1])
                    v = (points[k][0] - points[j][0], points[k][1] - points[j][1])
                    nu, nv = math.hypot(*u) or 1.0, math.hypot(*v) or 1.0
                    values.append((u[0] * v[0] + u[1] * v[1]) / (nu * nv))
        return values

    expected = smooth_l1(cosines([(0, 0), (1, 0), (0, 1)]), cosines([(0, 0), (1, 0), (1, 1)]))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_attention_map_is_normalised_channel_mean_of_squares() -> None:
    feature_map = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # (1, C=2, H=1, W=2)
    raw = [(1 + 9) / 2, (4 + 0) / 2]
    norm = math.hypot(*raw)
    assert attention_map(feature_map)[0].tolist() == pytest.approx([raw[0] / norm, raw[1] / norm])
    maps = attention_map(torch.randn(5, 7, 3, 3))
    assert torch.allclose(maps.norm(dim=1), torch.ones(5))


def test_attention_transfer_ignores_channels_scale_and_pools_grids() -> None:
    teacher = torch.randn(2, 16, 2, 2)
    student = 3.0 * teacher[:, :4].repeat(1, 2, 1, 1)  # different channel count, same per-position energy ratio
    assert float(attention_transfer(student, teacher[:, :4])) == pytest.approx(0.0, abs=1e-7)
    big = teacher.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 4x4 grid of the same map
    assert float(attention_transfer(big, teacher)) == pytest.approx(0.0, abs=1e-6)
    other = torch.zeros(2, 1, 2, 2)
    other[:, :, 0, 0] = 1.0
    single = torch.zeros(2, 1, 2, 2)
    single[:, :, 1, 1] = 1.0
    assert float(attention_transfer(other, single)) == pytest.approx(0.5)  # (1^2 + 1^2) / 4 positions


def test_attention_matrix_kl_averages_heads_when_counts_differ() -> None:
    teacher = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]]])  # 2 heads -> mean [[.5,.5],[.5,.5]]
    student = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])  # 1 head
    row = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(attention_matrix_loss(student, teacher, "kl")) == pytest.approx((row + 0.0) / 2, rel=1e-5)
    assert float(attention_matrix_loss(student, teacher, "mse")) == pytest.approx((2 * 0.25**2) / 4)
    with pytest.raises(ValueError, match="same token grid"):
        attention_matrix_loss(torch.rand(1, 1, 3, 3), teacher)


def test_info_nce_known_answer_and_memory_negatives() -> None:
    keys = torch.eye(2)
    expected = math.log(1 + math.exp(-1))  # -log(e / (e + 1)) for both rows
    assert float(info_nce(keys, keys, 1.0)) == pytest.approx(expected, rel=1e-6)
    negatives = torch.tensor([[1.0, 0.0]])
    with_bank = (-math.log(math.e / (2 * math.e + 1)) - math.log(math.e / (math.e + 2))) / 2
    assert float(info_nce(keys, keys, 1.0, negatives)) == pytest.approx(with_bank, rel=1e-6)


def test_similarity_preserving_by_hand() -> None:
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # gram [[1,1],[1,2]]
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # gram identity
    s = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(5), 2 / math.sqrt(5)]]
    t = [[1.0, 0.0], [0.0, 1.0]]
    expected = sum((s[i][j] - t[i][j]) ** 2 for i in range(2) for j in range(2)) / 4
    assert float(similarity_preserving(student, teacher)) == pytest.approx(expected, rel=1e-6)
    assert float(similarity_preserving(2 * teacher, teacher)) == pytest.approx(0.0, abs=1e-7)


def test_clip_losses_by_hand() -> None:
    text = torch.eye(2)
    student, teacher, labels = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    contrastive, kl = clip_losses(student, teacher, text, labels, temperature=1.0)
    p_student = [math.e / (math.e + 1), 1 / (math.e + 1)]
    p_teacher = [1 / (math.e + 1), math.e / (math.e + 1)]
    assert float(contrastive) == pytest.approx(-math.log(p_student[0]), rel=1e-6)
    expected_kl = sum(t * math.log(t / s) for t, s in zip(p_teacher, p_student, strict=True))
    assert float(kl) == pytest.approx(expected_kl, rel=1e-5)


def test_soft_cross_entropy_by_hand() -> None:
    student, teacher = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]])
    assert float(soft_cross_entropy(student, teacher)) == pytest.approx(-0.5 * math.log(0.25) - 0.5 * math.log(0.75))


def test_layer_mappings() -> None:
    student = [f"hidden.{i}" for i in range(2)]
    teacher = expand_taps(["pooled", "hidden.<i>"], 6)
    assert teacher == ["pooled"] + [f"hidden.{i}" for i in range(6)]
    assert layer_mapping("uniform", student, teacher, "hidden") == [("hidden.0", "hidden.2"), ("hidden.1", "hidden.5")]
    assert layer_mapping("last", student, teacher, "hidden") == [("hidden.1", "hidden.5")]
    assert layer_mapping("0=1,1=3", student, teacher, "hidden") == [("hidden.0", "hidden.1"), ("hidden.1", "hidden.3")]
    with pytest.raises(BenchError, match="'last', 'uniform'"):
        layer_mapping("first", student, teacher, "hidden")
    with pytest.raises(BenchError, match="attn"):
        layer_mapping("last", student, teacher, "attn")


def test_pair_regressor_projects_only_when_dims_differ() -> None:
    conv = PairRegressor((8, 4, 4), (16, 2, 2), "mse")
    assert sum(p.numel() for p in conv.parameters()) == 8 * 16 + 16  # a 1x1 conv
    assert conv(torch.randn(3, 8, 4, 4), torch.randn(3, 16, 2, 2)).shape == ()
    same = PairRegressor((5,), (5,), "cosine")
    assert sum(p.numel() for p in same.parameters()) == 0
    x = torch.randn(4, 5)
    assert float(same(2 * x, x)) == pytest.approx(0.0, abs=1e-6)
    tokens_vs_vector = PairRegressor((9, 6), (3,), "mse")  # different ranks: mean-pooled, then a linear map
    assert sum(p.numel() for p in tokens_vs_vector.parameters()) == 6 * 3 + 3


def test_infonce_memory_bank_adds_past_teacher_keys_as_negatives() -> None:
    """`infonce` (formerly `crd`) keeps today's formula: in-batch InfoNCE at T=0.1 plus queued teacher keys."""
    method = METHODS.get("infonce")(MethodContext(3, 6, 4), {"infonce_memory": 5, "infonce_dim": 8})
    student, teacher = {"logits": torch.randn(4, 3), "embedding": torch.randn(4, 4)}, {"pooled": torch.randn(4, 6)}
    labels = torch.tensor([0, 1, 2, 0])
    first = method(student, teacher, labels)["infonce"]
    assert method.filled == 4  # the first batch had no negatives from the bank
    queries = torch.nn.functional.normalize(method.student_head(student["embedding"]), dim=-1)
    keys = torch.nn.functional.normalize(method.teacher_head(teacher["pooled"]), dim=-1)
    assert float(first) == pytest.approx(float(info_nce(queries, keys, 0.1)), rel=1e-5)
    second = method(student, teacher, labels)["infonce"]
    assert float(second) == pytest.approx(float(info_nce(queries, keys, 0.1, keys)), rel=1e-5)
    assert method.filled == 5 and method.num_params() == 4 * 8 + 8 + 6 * 8 + 8


def test_combined_weights_parts_and_counts_ce_once() -> None:
    context = MethodContext(3, 10, 4)
    method = METHODS.get("combined")(context, {"combine": "kd:0.5,feature:2", "alpha": 0.6, "beta": 3.0,
                                               "ce_weight": 0.4})
    assert method.term_weights() == pytest.approx({"ce": 0.4, "kd": 0.5, "feat": 2 * 3.0})  # alpha: only kd's own
    assert method.num_params() == 4 * 10 + 10
    for bad in ("kd:0.5,nope", "kd,kd", "combined", "kd:x"):
        with pytest.raises(BenchError, match="combine"):
            METHODS.get("combined")(context, {"combine": bad})


def test_method_hparam_names_do_not_clash() -> None:
    """`combined` exposes every part's hparams, so two methods may share a name only with the same default."""
    seen: dict[str, object] = {}
    for entry in METHODS:
        if entry.name == "combined":
            continue
        for name, value in entry.obj.defaults.items():
            assert seen.setdefault(name, value) == value, f"{entry.name}.{name} clashes"
