"""Each training batch's student inputs and teacher targets under data.teacher_views cached or online.

`cached`: row r in epoch e reads view (e - 1 + offset_r) mod K of the view cache (offset_r seeded by the run's
seed), rebuilt for the student from the stored parameters, so its input is the view the teacher labelled.
`online`: the views are drawn from the run's augmentation generator and the teacher labels them in this step.
Head students read the teacher's features of the view (cached: from the cache; online: from this step's pass).
Under mixup the CE term is the mix of the two labels' CE (Zhang et al., 2018), by the mixing ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.names import UNLABELED
from bench.data.views import UNIFORMS, params_from_uniforms, render_views, view_offsets
from bench.run.loader import ImageInputs
from bench.teacher_outputs.views import Labeller, ViewCache


@dataclass
class Mix:
    """A mixup batch's partner labels and each image's share of the mix."""

    partner_labels: torch.Tensor
    lam: torch.Tensor


@dataclass
class ViewFeed:
    """What train_student reads per batch instead of fixed teacher targets (see the module docstring)."""

    mode: str  # cached | online
    augment: str
    images: Any  # the train split's uint8 images (partners, online teacher inputs, head students' rows)
    train_labels: torch.Tensor  # every train row's label, UNLABELED outside the labeled rows
    student: ImageInputs | None  # image students: size and normalisation; None for head students
    input_tap: str | None  # head students: the teacher tap they read
    targets: tuple[str, ...]  # the teacher outputs the method reads
    seed: int  # the run's seed (where each row's cycle through the cached views starts)
    student_size: int
    rows: np.ndarray | None = None  # batch position -> train row (scratch under data.labeled_limit)
    cache: ViewCache | None = None
    labeller: Labeller | None = None
    kd_targets: str = ""  # runs.kd_targets of a run reading these views' logits (which head labelled them)

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        return index if self.rows is None else torch.from_numpy(self.rows[index.numpy()])

    def _raw(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[rows.numpy()])).to(device, non_blocking=True)

    def batch(self, index: torch.Tensor, epoch: int, raw: torch.Tensor | None, generator: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor], Mix | None]:
        """(student inputs, teacher targets, mixup labels) on `device` for the batch at positions `index` in
        epoch `epoch` (1-based); `raw` is its uint8 images (image students) or None."""
        rows = self._rows(index.cpu())
        if self.mode == "cached":
            assert self.cache is not None
            view = (epoch - 1 + view_offsets(self.seed, rows.numpy(), self.cache.count)) % self.cache.count
            params = self.cache.view_params(view, rows)
            teacher = {name: self.cache.targets(view, rows, name).to(device, non_blocking=True)
                       for name in self.targets}
            features = (self.cache.targets(view, rows, self.input_tap).to(device, non_blocking=True)
                        if self.input_tap is not None else None)
        else:
            assert self.labeller is not None
            u = torch.rand(len(rows), UNIFORMS, generator=generator, dtype=torch.float64)
            params = params_from_uniforms(u, self.augment, len(self.train_labels), self.student_size)
            wanted = [*self.targets, *([self.input_tap] if self.input_tap is not None else [])]
            teacher, features = {}, None
            if wanted:
                source = raw if raw is not None else self._raw(rows, device)  # raw: these rows' images
                prep = self.labeller.preprocess
                outputs = self.labeller(render_views(source, self._partner(params, device), params, prep.input_size,
                                                     prep.mean, prep.std, self.augment, prep.interpolation),
                                        sorted(set(wanted)))
                teacher = {name: outputs[name] for name in self.targets}
                features = outputs[self.input_tap] if self.input_tap is not None else None
        if self.student is None:
            assert features is not None
            inputs = features
        else:
            source = raw if raw is not None else self._raw(rows, device)
            inputs = render_views(source.to(device, non_blocking=True), self._partner(params, device), params,
                                  self.student.size, self.student.mean, self.student.std, self.augment)
        mix = None
        if "partner" in params:
            mix = Mix(self.train_labels[params["partner"]].to(device, non_blocking=True),
                      params["lam"].to(device, non_blocking=True))
        return inputs, teacher, mix

    def _partner(self, params: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | None:
        return self._raw(params["partner"], device) if "partner" in params else None

    @property
    def teacher_seconds(self) -> float:
        """Teacher time on views this run: the cache entry's K passes, or this run's online forwards."""
        if self.cache is not None:
            return self.cache.event.teacher_seconds
        return self.labeller.seconds if self.labeller is not None else 0.0

    @property
    def teacher_images(self) -> int:
        if self.cache is not None:
            return self.cache.images if self.targets or self.input_tap else 0
        return self.labeller.images if self.labeller is not None else 0


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mix: Mix, label_smoothing: float) -> torch.Tensor:
    """lam * CE(label) + (1 - lam) * CE(partner's label), per image; unlabeled rows weigh 0, normalised by the
    labeled weight (with every row labeled: the batch mean, as mixup's CE)."""
    def ce(target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none", label_smoothing=label_smoothing)

    lam = mix.lam.float()
    weight_a = lam * (labels != UNLABELED).float()
    weight_b = (1 - lam) * (mix.partner_labels != UNLABELED).float()
    total = (weight_a * ce(labels) + weight_b * ce(mix.partner_labels)).sum()
    return total / (weight_a + weight_b).sum().clamp(min=1e-12)  # no labeled weight: total is 0 too
