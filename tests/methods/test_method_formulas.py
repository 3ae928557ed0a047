"""Every registered method against its paper's formula, written out independently here (float64, loops).

Each case builds the method on small seeded tensors, computes the expected terms from the paper's equations
with the method's own learned projections, and compares terms and weighted total (relative error < 1e-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from bench.core.registries import METHODS
from bench.methods.base import Method, MethodContext
from bench.methods.crd import OtherClassSampler

REL = 1e-5
B, C = 6, 3
Terms = dict[str, float]


def d(x: torch.Tensor) -> torch.Tensor:
    return x.detach().double()


def ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    logits = d(logits)
    return float(sum(torch.logsumexp(row, 0) - row[y] for row, y in zip(logits, labels, strict=True)) / len(labels))


def log_softmax(row: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return row / temperature - torch.logsumexp(row / temperature, 0)


def linear(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return d(x) @ d(module.weight).t() + d(module.bias)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((d(a) - d(b)) ** 2).sum() / a.numel())


def huber(a: torch.Tensor, b: torch.Tensor) -> float:
    diff = (d(a) - d(b)).abs().flatten()
    return float(sum(0.5 * x**2 if x < 1 else x - 0.5 for x in diff) / len(diff))


def base_inputs(seed: int, student_dim: int = 4, teacher_dim: int = 5) -> tuple[dict, dict, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = {"logits": torch.randn(B, C, generator=generator), "embedding": torch.randn(B, student_dim,
                                                                                          generator=generator)}
    teacher = {"logits": torch.randn(B, C, generator=generator), "pooled": torch.randn(B, teacher_dim,
                                                                                       generator=generator)}
    return student, teacher, torch.tensor([0, 1, 2, 0, 1, 2])


def hinton(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> float:
    """Hinton et al. 2015: T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), batch mean."""
    total = 0.0
    for s, te in zip(d(student_logits), d(teacher_logits), strict=True):
        log_p, log_q = log_softmax(te, t), log_softmax(s, t)
        total += float((log_p.exp() * (log_p - log_q)).sum())
    return t**2 * total / len(student_logits)


def case_scratch(seed: int) -> tuple[Method, dict, dict, torch.Tensor, Callable[[Method], Terms]]:
    student, teacher, labels = base_inputs(seed)
    return (METHODS.get("scratch")(MethodContext(C, 5, 4), {}), student, teacher, labels,
            lambda m: {"ce": ce(student["logits"], labels)})


def case_kd(seed: int):  # noqa: ANN201 - every case returns the same tuple
    student, teacher, labels = base_inputs(seed)
    return (METHODS.get("kd")(MethodContext(C, 5, 4), {}), student, teacher, labels,
            lambda m: {"ce": ce(student["logits"], labels), "kd": hinton(student["logits"], teacher["logits"], 4.0)})


def case_feature(seed: int):  # noqa: ANN201
    """FitNets (Romero et al. 2015): ||r(student) - teacher||^2 mean, r a learned regressor (linear here)."""
    student, teacher, labels = base_inputs(seed)
    method = METHODS.get("feature")(MethodContext(C, 5, 4), {})

    def expected(m: Method) -> Terms:
        projected = linear(m.regressors[0].projection, student["embedding"])
        return {"ce": ce(student["logits"], labels), "feat": mse(projected, teacher["pooled"])}

    return method, student, teacher, labels, expected


def at_map(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
    """Zagoruyko & Komodakis: Q = mean_c |A|^2, flattened, L2-normalised per sample; A first average-pooled
    to `grid` x `grid` when it is larger (RepDistiller's rule for maps of different sizes)."""
    a = d(feature_map)
    n, c, h, w = a.shape
    a = a.view(n, c, grid, h // grid, grid, w // grid).mean((3, 5))
    return unit(a.abs().pow(2).mean(1).flatten(1))


def case_attention(seed: int):  # noqa: ANN201
    generator = torch.Generator().manual_seed(seed)
    student, teacher, labels = base_inputs(seed)
    student |= {"hidden.0": torch.randn(B, 4, 8, 8, generator=generator),
                "hidden.1": torch.randn(B, 6, 4, 4, generator=generator)}
    student["feature_map"] = student["hidden.1"]
    teacher |= {"hidden.0": torch.randn(B, 5, 4, 4, generator=generator),
                "hidden.1": torch.randn(B, 7, 2, 2, generator=generator)}
    teacher["feature_map"] = teacher["hidden.1"]
    shapes = {name: tuple(value.shape[1:]) for name, value in student.items()}
    teacher_shapes = {name: tuple(value.shape[1:]) for name, value in teacher.items() if name != "logits"}
    method = METHODS.get("attention")(MethodContext(C, 5, 4, shapes, teacher_shapes), {})

    def expected(m: Method) -> Terms:
        assert m.term_weights()["at"] == 1000  # beta = 1000 (RepDistiller, mdistiller)
        pairs = [(student["hidden.0"], teacher["hidden.0"], 4), (student["hidden.1"], teacher["hidden.1"], 2)]
        at = sum(float(((at_map(s, g) - at_map(t, g)) ** 2).mean()) for s, t, g in pairs)
        return {"ce": ce(student["logits"], labels), "at": at}

    return method, student, teacher, labels, expected


def rkd_terms(s: torch.Tensor, t: torch.Tensor) -> tuple[float, float]:
    """Park et al. 2019: Huber of mean-normalised pairwise distances; Huber of cos of every triplet's angle."""
    s, t = d(s), d(t)
    n = len(s)

    def distances(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                out[i, j] = (x[i] - x[j]).norm() if i != j else 0.0
        return out / (out.sum() / (n * n - n))

    def cosines(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n, n, n, dtype=torch.float64)
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    if i != j and k != j:
                        out[j, i, k] = torch.dot(unit(x[i] - x[j]), unit(x[k] - x[j]))
        return out

    return huber(distances(s), distances(t)), huber(cosines(s), cosines(t))


def case_rkd(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)

    def expected(m: Method) -> Terms:
        dist, angle = rkd_terms(student["embedding"], teacher["pooled"])
        assert m.term_weights() == {"ce": 1.0, "rkd_dist": 25.0, "rkd_angle": 50.0}
        return {"ce": ce(student["logits"], labels), "rkd_dist": dist, "rkd_angle": angle}

    return METHODS.get("rkd")(MethodContext(C, 5, 4), {}), student, teacher, labels, expected


def case_sp(seed: int):  # noqa: ANN201
    """Tung & Mori 2019: ||rownorm(S S^T) - rownorm(T T^T)||_F^2 / b^2."""
    student, teacher, labels = base_inputs(seed)

    def expected(m: Method) -> Terms:
        s, t = d(student["embedding"]), d(teacher["pooled"])
        gs, gt = unit(s @ s.t()), unit(t @ t.t())
        return {"ce": ce(student["logits"], labels), "sp": float(((gs - gt) ** 2).sum()) / B**2}

    return METHODS.get("sp")(MethodContext(C, 5, 4), {}), student, teacher, labels, expected


def case_infonce(seed: int):  # noqa: ANN201
    """Today's loss, unchanged: -log softmax_j(q_i . k_j / 0.1)[i], queries from the student, keys the teacher."""
    student, teacher, labels = base_inputs(seed)

    def expected(m: Method) -> Terms:
        q = unit(linear(m.student_head, student["embedding"]))
        k = unit(linear(m.teacher_head, teacher["pooled"]))
        logits = q @ k.t() / 0.1
        loss = float(sum(-log_softmax(row)[i] for i, row in enumerate(logits)) / B)
        assert m.term_weights()["infonce"] == 0.8
        return {"ce": ce(student["logits"], labels), "infonce": loss}

    return METHODS.get("infonce")(MethodContext(C, 5, 4), {}), student, teacher, labels, expected


class FixedRows(torch.nn.Module):
    """Stands in for the sampler: the negatives are given, so the test knows them."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, anchors: torch.Tensor, k: int) -> torch.Tensor:
        assert k == self.rows.shape[1]
        return self.rows


TRAIN_LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])  # N = 10 training rows


def crd_expected(student_embed: torch.Tensor, teacher_embed: torch.Tensor, rows: torch.Tensor,
                 student_memory: torch.Tensor, teacher_memory: torch.Tensor, z: tuple[float, float] | None,
                 t: float = 0.07) -> tuple[float, tuple[float, float]]:
    """Tian et al. Eq. 18 both ways with P = exp(v . m / T) / Z, h = P / (P + K/N); Z = N mean(exp) if not given."""
    n, k = len(TRAIN_LABELS), rows.shape[1] - 1
    total, zs = 0.0, []
    for which, (anchors, memory) in enumerate(((student_embed, teacher_memory), (teacher_embed, student_memory))):
        exps = torch.stack([torch.stack([torch.exp(torch.dot(memory[r], anchors[i]) / t) for r in rows[i]])
                            for i in range(len(rows))])
        norm = z[which] if z is not None else float(exps.mean()) * n
        zs.append(norm)
        loss = 0.0
        for i in range(len(rows)):
            p = exps[i] / norm
            loss -= math.log(p[0] / (p[0] + k / n))
            loss -= sum(math.log((k / n) / (p[j] + k / n)) for j in range(1, k + 1))
        total += loss / len(rows)
    return total, (zs[0], zs[1])


def case_crd(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)
    method = METHODS.get("crd")(MethodContext(C, 5, 4, train_labels=TRAIN_LABELS), {"crd_negatives": 4})
    index = torch.tensor([0, 1, 2, 3, 4, 5])
    teacher["indices"] = index
    negatives = torch.tensor([[1, 2, 4, 5], [0, 2, 3, 9], [0, 1, 6, 7], [1, 5, 7, 8], [3, 6, 9, 0], [0, 1, 3, 4]])
    method.sampler = FixedRows(negatives)
    rows = torch.cat([index.unsqueeze(1), negatives], 1)
    memories = d(method.student_memory).clone(), d(method.teacher_memory).clone()

    def expected(m: Method) -> Terms:
        vs, vt = unit(linear(m.student_head, student["embedding"])), unit(linear(m.teacher_head, teacher["pooled"]))
        loss, _ = crd_expected(vs, vt, rows, *memories, None)
        assert m.term_weights() == {"ce": 1.0, "crd": 0.8}
        return {"ce": ce(student["logits"], labels), "crd": loss}

    return method, student, teacher, labels, expected


def case_clip(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)
    text = torch.randn(C, 5, generator=torch.Generator().manual_seed(seed + 1))
    teacher["image_embed"] = teacher["pooled"]
    method = METHODS.get("clip")(MethodContext(C, 5, 4, class_text=text), {})

    def expected(m: Method) -> Terms:
        s = unit(linear(m.projection, student["embedding"])) @ unit(d(text)).t() / 0.07
        te = unit(d(teacher["image_embed"])) @ unit(d(text)).t() / 0.07
        kl = sum(float((log_softmax(b).exp() * (log_softmax(b) - log_softmax(a))).sum())
                 for a, b in zip(s, te, strict=True))
        return {"ce": ce(student["logits"], labels), "clip": ce(s, labels), "clip_kl": kl / B}

    return method, student, teacher, labels, expected


def case_tinybert(seed: int):  # noqa: ANN201
    """Jiao et al. 2020: sum_layers MSE(scores) + sum_layers MSE(H_s W_h, H_t) + soft CE(z_t, z_s)."""
    generator = torch.Generator().manual_seed(seed)
    student, teacher, labels = base_inputs(seed)
    for i in range(2):
        student[f"hidden.{i}"] = torch.randn(B, 4, 4, generator=generator)
        student[f"attn_scores.{i}"] = 3 * torch.randn(B, 2, 5, 5, generator=generator)
    for i in range(4):
        teacher[f"hidden.{i}"] = torch.randn(B, 4, 6, generator=generator)
        teacher[f"attn_scores.{i}"] = 3 * torch.randn(B, 2, 5, 5, generator=generator)
    shapes = {name: tuple(value.shape[1:]) for name, value in student.items()}
    teacher_shapes = {name: tuple(value.shape[1:]) for name, value in teacher.items() if name != "logits"}
    method = METHODS.get("tinybert")(MethodContext(C, 5, 4, shapes, teacher_shapes), {})

    def expected(m: Method) -> Terms:
        pairs = [(0, 1), (1, 3)]  # uniform: student layer i -> teacher layer (i + 1) * 4 / 2 - 1
        hidden = sum(mse(linear(r.projection, student[f"hidden.{s}"]), teacher[f"hidden.{t}"])
                     for (s, t), r in zip(pairs, m.regressors, strict=True))
        attn = sum(mse(student[f"attn_scores.{s}"], teacher[f"attn_scores.{t}"]) for s, t in pairs)
        pred = sum(float(-(log_softmax(te).exp() * log_softmax(s)).sum())
                   for s, te in zip(d(student["logits"]), d(teacher["logits"]), strict=True)) / B
        return {"ce": ce(student["logits"], labels), "hidden": hidden, "attn": attn, "pred": pred}

    return method, student, teacher, labels, expected


def case_combined(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)
    method = METHODS.get("combined")(MethodContext(C, 5, 4), {})

    def expected(m: Method) -> Terms:
        assert m.term_weights() == pytest.approx({"ce": 1.0, "kd": 1.0, "feat": 100.0})  # ce_weight sets CE
        projected = linear(m.parts["feature"].regressors[0].projection, student["embedding"])
        return {"ce": ce(student["logits"], labels), "kd": hinton(student["logits"], teacher["logits"], 4.0),
                "feat": mse(projected, teacher["pooled"])}

    return method, student, teacher, labels, expected


def case_joint_cosine(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)
    teacher["image_embed"] = teacher["pooled"]

    def expected(m: Method) -> Terms:
        cos = (unit(linear(m.projection, student["embedding"])) * unit(d(teacher["image_embed"]))).sum(1)
        return {"cos": float((1 - cos).mean())}

    return METHODS.get("joint-cosine")(MethodContext(1, 5, 4), {}), student, teacher, labels, expected


def case_joint_contrastive(seed: int):  # noqa: ANN201
    student, teacher, labels = base_inputs(seed)
    teacher["image_embed"] = teacher["pooled"]
    teacher["text_embed"] = torch.randn(B, 5, generator=torch.Generator().manual_seed(seed + 2))

    def expected(m: Method) -> Terms:
        joint = unit(linear(m.projection, student["embedding"]))
        cos = float((1 - (joint * unit(d(teacher["image_embed"]))).sum(1)).mean())
        logits = joint @ unit(d(teacher["text_embed"])).t() / 0.05
        image_to_text = sum(float(-log_softmax(row)[i]) for i, row in enumerate(logits)) / B
        text_to_image = sum(float(-log_softmax(row)[i]) for i, row in enumerate(logits.t())) / B
        return {"cos": cos, "itc": 0.5 * (image_to_text + text_to_image)}

    return METHODS.get("joint-contrastive")(MethodContext(1, 5, 4), {}), student, teacher, labels, expected


CASES = {"scratch": case_scratch, "kd": case_kd, "feature": case_feature, "attention": case_attention,
         "rkd": case_rkd, "sp": case_sp, "infonce": case_infonce, "crd": case_crd, "clip": case_clip,
         "tinybert": case_tinybert, "combined": case_combined, "joint-cosine": case_joint_cosine,
         "joint-contrastive": case_joint_contrastive}


@pytest.mark.parametrize("name", METHODS.names())
def test_method_matches_its_papers_formula(name: str) -> None:
    assert name in CASES, f"method {name!r} has no formula check: add a case to tests/methods/test_method_formulas.py"
    torch.manual_seed(0)
    method, student, teacher, labels, expected = CASES[name](seed=7)
    terms = method(student, teacher, labels)
    want = expected(method)
    assert set(terms) == set(want)
    for term, value in want.items():
        assert float(terms[term]) == pytest.approx(value, rel=REL), term
    weights = method.term_weights()
    assert float(method.total(terms)) == pytest.approx(sum(weights[t] * v for t, v in want.items()), rel=REL)


def crd_setup(negatives: torch.Tensor) -> tuple[Method, dict, dict, torch.Tensor]:
    student, teacher, labels = base_inputs(3)
    method = METHODS.get("crd")(MethodContext(C, 5, 4, train_labels=TRAIN_LABELS), {"crd_negatives": 4})
    method.sampler = FixedRows(negatives)
    teacher["indices"] = torch.tensor([0, 1, 2, 3, 4, 5])
    return method, student, teacher, labels


def test_crd_memory_update_is_momentum_then_renormalise_and_z_is_kept() -> None:
    negatives = torch.tensor([[1, 2, 4, 5], [0, 2, 3, 9], [0, 1, 6, 7], [1, 5, 7, 8], [3, 6, 9, 0], [0, 1, 3, 4]])
    method, student, teacher, labels = crd_setup(negatives)
    old_s, old_t = d(method.student_memory).clone(), d(method.teacher_memory).clone()
    method(student, teacher, labels)
    vs, vt = unit(linear(method.student_head, student["embedding"])), unit(linear(method.teacher_head,
                                                                                  teacher["pooled"]))
    _, z = crd_expected(vs, vt, torch.cat([teacher["indices"].unsqueeze(1), negatives], 1), old_s, old_t, None)
    assert d(method.normalisers).tolist() == pytest.approx(list(z), rel=REL)
    for old, new, v in ((old_s, method.student_memory, vs), (old_t, method.teacher_memory, vt)):
        want = old.clone()
        want[:6] = unit(0.5 * old[:6] + 0.5 * v)  # m * memory + (1 - m) * v, then L2-normalised
        torch.testing.assert_close(d(new), want, rtol=1e-5, atol=1e-6)
        assert torch.equal(d(new)[6:], old[6:])  # rows not in the batch are untouched
    # the second batch: Z stays the first batch's, the scores read the updated banks
    other = torch.tensor([[2, 4, 5, 8], [6, 9, 3, 2], [7, 4, 3, 1], [2, 4, 5, 9], [6, 5, 2, 3], [7, 6, 1, 0]])
    method.sampler = FixedRows(other)
    memories = d(method.student_memory).clone(), d(method.teacher_memory).clone()
    loss = method(student, teacher, labels)["crd"]
    want, _ = crd_expected(vs, vt, torch.cat([teacher["indices"].unsqueeze(1), other], 1), *memories, z)
    assert float(loss) == pytest.approx(want, rel=REL)


def test_crd_negatives_come_from_other_classes_and_default_to_all_but_one_sample() -> None:
    method = METHODS.get("crd")(MethodContext(C, 5, 4, train_labels=TRAIN_LABELS), {})
    assert method.negatives == len(TRAIN_LABELS) - 1  # the paper's 16384, clipped to N - 1
    assert method.hparams["crd_temperature"] == 0.07 and method.hparams["crd_momentum"] == 0.5
    sampler = OtherClassSampler(TRAIN_LABELS)
    torch.manual_seed(0)
    anchors = torch.arange(len(TRAIN_LABELS)).repeat(50)
    rows = sampler(anchors, 9)
    assert rows.shape == (len(anchors), 9)
    for anchor in range(len(TRAIN_LABELS)):
        drawn = set(rows[anchors == anchor].flatten().tolist())
        assert drawn == {i for i, y in enumerate(TRAIN_LABELS.tolist()) if y != TRAIN_LABELS[anchor]}


def test_crd_needs_the_batch_indices_and_the_training_labels() -> None:
    from bench.core.errors import BenchError

    with pytest.raises(BenchError, match="train_labels"):
        METHODS.get("crd")(MethodContext(C, 5, 4), {})
    method = METHODS.get("crd")(MethodContext(C, 5, 4, train_labels=TRAIN_LABELS), {})
    student, teacher, labels = base_inputs(1)
    with pytest.raises(ValueError, match="indices"):
        method(student, teacher, labels)


def test_vit_student_gives_pre_softmax_scores() -> None:
    from bench.core.registries import STUDENTS
    from bench.students.base import StudentContext

    torch.manual_seed(0)
    vit = STUDENTS.get("vit")(StudentContext(C, 8, 8), {"depth": 2, "width": 8, "heads": 2, "patch_size": 4})
    captured = {}
    vit.blocks[1].attn.register_forward_pre_hook(lambda _m, inputs: captured.update(x=inputs[0]))
    out = vit(torch.randn(2, 3, 8, 8))
    q, k, _ = vit.blocks[1].attn.qkv(captured["x"]).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(out["attn_scores.1"], q @ k.transpose(-2, -1) / 2.0)
    torch.testing.assert_close(out["attn_scores.1"].softmax(-1), out["attn.1"])


def test_timm_teacher_gives_pre_softmax_scores() -> None:
    from bench.teachers.timm_vit import TimmTeacher, create_timm_model, timm_preprocess

    torch.manual_seed(0)
    encoder = create_timm_model("test_vit", None).eval()
    teacher = TimmTeacher("test-vit", encoder, timm_preprocess(encoder), "none")
    attention = encoder.blocks[0].attn
    captured = {}
    attention.register_forward_pre_hook(lambda _m, inputs: captured.update(x=inputs[0]))
    size = teacher.preprocess.input_size
    with torch.no_grad():
        out = teacher.features(torch.randn(2, 3, size, size), ["attn.0", "attn_scores.0"])
        x = captured["x"]
        q, k, _ = attention.qkv(x).view(*x.shape[:2], 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
        scores = attention.q_norm(q) * attention.scale @ attention.k_norm(k).transpose(-2, -1)
    torch.testing.assert_close(out["attn_scores.0"], scores)
    torch.testing.assert_close(out["attn_scores.0"].softmax(-1), out["attn.0"])


LABEL_TERMS = {"ce", "clip"}  # terms computed from the class labels (clip: CE of the class-text similarities)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"joint-cosine", "joint-contrastive"}))
def test_unlabeled_rows_change_nothing_in_ce_and_everything_in_teacher_terms(name: str) -> None:
    """data.labeled_limit: a row labeled -1 (transfer set) leaves CE as on the labeled rows; teacher terms see it."""
    def terms_for(labels_of: Callable[[torch.Tensor], torch.Tensor]) -> tuple[dict[str, float], dict, torch.Tensor]:
        torch.manual_seed(0)
        method, student, teacher, labels, _ = CASES[name](seed=7)
        return {k: float(v) for k, v in method(student, teacher, labels_of(labels)).items()}, student, labels

    full, student, labels = terms_for(lambda labels: labels)
    masked, _, _ = terms_for(lambda labels: torch.where(torch.arange(B) < 3, labels, -1))
    none, _, _ = terms_for(lambda labels: torch.full_like(labels, -1))
    assert masked["ce"] == pytest.approx(ce(student["logits"][:3], labels[:3]), rel=REL)
    assert none["ce"] == 0.0
    assert masked["ce"] != pytest.approx(full["ce"], rel=REL)
    for term in set(full) - LABEL_TERMS:  # the teacher's terms read every row, labeled or not
        assert masked[term] == pytest.approx(full[term], rel=REL) and none[term] == pytest.approx(full[term], rel=REL)
