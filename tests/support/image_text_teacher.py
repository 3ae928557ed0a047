"""A tiny image-text teacher that follows the COMMON taps contract (for tests only: no weights to fetch).

Images: `pooled` = mean colour + a fixed random conv's pooled features; `image_embed` = a soft
assignment of the mean colour to colour prototypes, mapped to per-colour joint vectors. Text:
colour words map to the same joint vectors, every other word to a small hashed vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from bench.cards import TeacherCard
from bench.names import IMAGE_TEXT
from bench.registries import TEACHERS
from bench.teachers.base import Preprocess, Teacher
from tests.support.dataset_fixtures import COLOURS

NAME = "tiny-image-text"
JOINT_DIM = 16
MEAN = STD = (0.5, 0.5, 0.5)


class TinyImageTextTeacher(Teacher):
    """Frozen colour-aware image encoder and bag-of-words text encoder sharing one joint space."""

    family = "test"
    modality = "image-text"
    taps = ("pooled", "image_embed")

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        encoder = nn.Sequential(nn.Conv2d(3, 13, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            for parameter in encoder.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        super().__init__(NAME, encoder, Preprocess(32, MEAN, STD, "bilinear"), embed_dim=16, fingerprint="tiny0")
        prototypes = (torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255.0 - 0.5) / 0.5
        self.register_buffer("prototypes", prototypes)
        vectors = F.normalize(torch.randn(len(COLOURS), JOINT_DIM, generator=generator), dim=-1)
        self.register_buffer("colour_vectors", vectors)
        self.words = {name: i for i, name in enumerate(COLOURS)}

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        mean_colour = images.float().mean(dim=(2, 3))  # (N, 3) in normalised units
        pooled = torch.cat([mean_colour, self.encoder(images.float())], dim=1)
        weights = torch.softmax(-torch.cdist(mean_colour, self.prototypes) / 0.05, dim=1)
        outputs = {"pooled": pooled, "image_embed": F.normalize(weights @ self.colour_vectors, dim=-1)}
        return {tap: outputs[tap] for tap in taps}

    def _word_vector(self, word: str) -> torch.Tensor:
        if word in self.words:
            return self.colour_vectors[self.words[word]]
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return 0.15 * torch.randn(JOINT_DIM, generator=torch.Generator().manual_seed(seed))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashed bag-of-words embedding, L2-normalised, in the image_embed space."""
        rows = [torch.stack([self._word_vector(w) for w in text.lower().split()] or [torch.zeros(JOINT_DIM)]).sum(0)
                for text in texts]
        return F.normalize(torch.stack(rows).to(self.prototypes.device), dim=-1)


@contextmanager
def registered() -> Iterator[str]:
    """Register the tiny teacher in TEACHERS for the duration of a test."""
    with TEACHERS.temporarily(NAME, lambda weights=None, *, allow_download=False: TinyImageTextTeacher(),
                              TeacherCard("test", TinyImageTextTeacher.taps, IMAGE_TEXT),
                              description="tiny image-text teacher (tests)"):
        yield NAME
