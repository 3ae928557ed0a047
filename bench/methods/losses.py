"""Loss functions shared by methods (one place for each formula)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.names import UNLABELED


def labeled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy averaged over the labeled rows; transfer-set rows (label -1) add nothing, 0 when none is labeled.

    Every method's CE term is this one (data.labeled_limit): with every row labeled it is F.cross_entropy, with the
    run's `label_smoothing` (hparam) as torch applies it.
    """
    labeled = (labels != UNLABELED).sum().clamp(min=1)
    return F.cross_entropy(logits, labels, ignore_index=UNLABELED, reduction="sum",
                           label_smoothing=label_smoothing) / labeled


_PER_MODEL: dict[tuple[str, str, torch.dtype], torch.Tensor] = {}


def per_model(values: Sequence[object], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Per-model constants of a bundle (a value or a row per model) as a tensor on `device`, made once per distinct
    values: a bundle asks for the same ones every step, and a tensor made from Python values on a GPU is a copy the
    host waits for."""
    key = (repr(values), str(device), dtype)
    if key not in _PER_MODEL:
        if len(_PER_MODEL) >= 256:  # a long process with many bundles: start over rather than grow
            _PER_MODEL.clear()
        _PER_MODEL[key] = torch.tensor(values, dtype=dtype, device=device)
    return _PER_MODEL[key]


def stacked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                          label_smoothings: Sequence[float]) -> torch.Tensor:
    """labeled_cross_entropy of each model of a bundle (bench/run/stacked.py): logits [M, B, C], labels [M, B], one
    label smoothing per model; returns [M]. The same per-row losses (F.cross_entropy, reduction none), summed per
    model; a smoothing that differs between models is computed once per distinct value."""
    flat_logits, flat_labels = logits.flatten(0, 1), labels.flatten()
    labeled = (labels != UNLABELED).sum(1).clamp(min=1)
    out: torch.Tensor | None = None
    for smoothing in sorted(set(label_smoothings)):
        rows = F.cross_entropy(flat_logits, flat_labels, ignore_index=UNLABELED, reduction="none",
                               label_smoothing=smoothing).view(labels.shape)
        value = rows.sum(1) / labeled
        if out is None:
            out = value
        else:
            chosen = per_model([s == smoothing for s in label_smoothings], value.device, torch.bool)
            out = torch.where(chosen, value, out)
    assert out is not None, "a bundle has at least one model"
    return out


def hinton_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(p_teacher^T || p_student^T), batch mean (Hinton et al., 2015)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature**2


def stacked_hinton_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperatures: Sequence[float]) -> torch.Tensor:
    """hinton_kd of each model of a bundle: logits [M, B, C], one temperature per model; returns [M]."""
    temperature = per_model(list(temperatures), student_logits.device, student_logits.dtype)
    scale = temperature.view(-1, 1, 1)
    log_student = F.log_softmax(student_logits / scale, dim=-1)
    teacher_probs = F.softmax(teacher_logits / scale, dim=-1)
    kl = F.kl_div(log_student, teacher_probs, reduction="none").sum((1, 2)) / student_logits.shape[1]
    return kl * temperature**2


class FeatureRegressor(nn.Module):
    """Project the student embedding to the teacher's dim and compare (MSE or 1 - cosine)."""

    def __init__(self, student_dim: int, teacher_dim: int, loss: str) -> None:
        super().__init__()
        if loss not in ("mse", "cosine"):
            raise ValueError(f"feature loss must be 'mse' or 'cosine', got {loss!r}")
        self.loss = loss
        self.projection = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
        projected = self.projection(student_embedding)
        if self.loss == "mse":
            return F.mse_loss(projected, teacher_embedding)
        return (1.0 - F.cosine_similarity(projected, teacher_embedding, dim=-1)).mean()


def attention_map(feature_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis spatial attention: mean_c |f|^p, flattened and L2-normalised -> (N, H*W)."""
    return F.normalize(feature_map.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_transfer(student_map: torch.Tensor, teacher_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean over batch and positions of the squared difference of normalised attention maps.

    As Zagoruyko & Komodakis' code, `(at(x) - at(y)).pow(2).mean()`; the method multiplies by beta/2.
    Grids of different sizes: the larger map is average-pooled to the smaller (RepDistiller's rule).
    """
    size = (min(student_map.shape[-2], teacher_map.shape[-2]), min(student_map.shape[-1], teacher_map.shape[-1]))
    student_map = F.adaptive_avg_pool2d(student_map, size) if student_map.shape[-2:] != size else student_map
    teacher_map = F.adaptive_avg_pool2d(teacher_map, size) if teacher_map.shape[-2:] != size else teacher_map
    return (attention_map(student_map, p) - attention_map(teacher_map, p)).pow(2).mean()


def attention_matrix_loss(student_attn: torch.Tensor, teacher_attn: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """MSE or row-wise KL(teacher || student) of (N, heads, L, L) attention; heads averaged if counts differ."""
    if student_attn.shape[-1] != teacher_attn.shape[-1]:
        raise ValueError(f"attention over {student_attn.shape[-1]} student tokens vs {teacher_attn.shape[-1]} "
                         "teacher tokens; choose patch/image sizes that give the same token grid")
    if student_attn.shape[1] != teacher_attn.shape[1]:
        student_attn, teacher_attn = student_attn.mean(1, keepdim=True), teacher_attn.mean(1, keepdim=True)
    if loss == "mse":
        return F.mse_loss(student_attn, teacher_attn)
    if loss == "kl":
        eps = 1e-8
        kl = teacher_attn * ((teacher_attn + eps).log() - (student_attn + eps).log())
        return kl.sum(-1).mean()
    raise ValueError(f"attention loss must be 'mse' or 'kl', got {loss!r}")


def _pairwise_distances(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    squared = (embeddings.unsqueeze(0) - embeddings.unsqueeze(1)).pow(2).sum(-1)
    off_diagonal = ~torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    return squared.clamp(min=eps).sqrt() * off_diagonal


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance term: smooth-L1 between pairwise distances, each divided by its mean (Park et al. 2019)."""
    with torch.no_grad():
        teacher_d = _pairwise_distances(teacher.flatten(1))
        teacher_d = teacher_d / teacher_d[teacher_d > 0].mean()
    student_d = _pairwise_distances(student.flatten(1))
    student_d = student_d / student_d[student_d > 0].mean()
    return F.smooth_l1_loss(student_d, teacher_d)


def _angles(embeddings: torch.Tensor) -> torch.Tensor:
    directions = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), p=2, dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle term: smooth-L1 between cosines of the angles every triplet forms."""
    with torch.no_grad():
        teacher_angles = _angles(teacher.flatten(1))
    return F.smooth_l1_loss(_angles(student.flatten(1)), teacher_angles)


def similarity_preserving(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SP (Tung & Mori 2019): ||norm_rows(S S^T) - norm_rows(T T^T)||_F^2 / N^2."""
    student_flat, teacher_flat = student.flatten(1), teacher.flatten(1)
    student_gram = F.normalize(student_flat @ student_flat.t(), dim=1)
    teacher_gram = F.normalize(teacher_flat @ teacher_flat.t(), dim=1)
    return (student_gram - teacher_gram).pow(2).sum() / len(student_flat) ** 2


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: query i must pick key i among the batch's keys (and any extra negatives)."""
    logits = queries @ keys.t()
    if negatives is not None and len(negatives):
        logits = torch.cat([logits, queries @ negatives.t()], dim=1)
    targets = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits / temperature, targets)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """-sum softmax(t/T) * log_softmax(s/T), batch mean (TinyBERT's prediction loss)."""
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return -(teacher_probs * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1).mean()
