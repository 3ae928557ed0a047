"""Zero-shot class logits of an image-text teacher from class-name prompts (KD targets without a probe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.teachers.base import Teacher

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass(frozen=True)
class ZeroShotHead:
    """Class embeddings from prompts, the teacher's temperature, and a line saying which reference this is."""

    class_embeds: torch.Tensor  # (C, E), L2-normalised
    scale: float
    bias: float
    reference: str

    def logits(self, image_embed: torch.Tensor) -> torch.Tensor:
        """(N, C) logits: scale * cosine(image, class prompt) + bias."""
        embeds = self.class_embeds.to(image_embed.device, image_embed.dtype)
        return self.scale * F.normalize(image_embed, dim=-1) @ embeds.T + self.bias


def zero_shot_head(teacher: Teacher, class_names: Sequence[str],
                   templates: Sequence[str] = DEFAULT_TEMPLATES) -> ZeroShotHead:
    """Average each class's prompt embeddings over templates (CLIP's prompt ensembling)."""
    if getattr(teacher, "modality", "image") != "image-text":
        raise BenchError(f"teacher {teacher.name!r} has no text encoder: zero-shot logits need an image-text teacher")
    if not class_names or not templates:
        raise BenchError("zero-shot logits need at least one class name and one prompt template")
    prompts = [template.format(name) for name in class_names for template in templates]
    embeds = teacher.encode_text(prompts).reshape(len(class_names), len(templates), -1).mean(dim=1)
    reference = (f"zero-shot {teacher.name} ({len(templates)} prompt template"
                 f"{'s' if len(templates) > 1 else ''}, e.g. {templates[0]!r})")
    return ZeroShotHead(F.normalize(embeds, dim=-1).cpu(), teacher.logit_scale, getattr(teacher, "logit_bias", 0.0),
                        reference)


def zero_shot_logits(teacher: Teacher, class_names: Sequence[str], image_embed: torch.Tensor,
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """(N, C) zero-shot class logits for image embeddings from the teacher's `image_embed` tap."""
    return zero_shot_head(teacher, class_names, templates).logits(image_embed)
