"""The one fake image-text teacher of the tests (every tap of the contract, colour-aware), and tiny data.

Images: `pooled` = the mean patch token (a linear function of the image: colour is in it); `image_embed` = a soft
assignment of the mean colour to colour prototypes, mapped to per-colour joint vectors, so retrieval on
colour fixtures (tests/support/dataset_fixtures.py) is well above chance. Text: colour words map to the same
joint vectors, every other word to a small hashed vector. The ViT-like taps (`feature_map`, `tokens`,
`hidden/attn/attn_scores.<i>`) come from 4x4 patches and DEPTH linear blocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import TeacherCard
from bench.core.names import IMAGE_TEXT
from bench.core.registries import TEACHERS
from bench.core.taps import ATTN, ATTN_SCORES, FEATURE_MAP, HIDDEN, IMAGE_EMBED, POOLED, TOKENS, expand_taps, tap_family
from bench.data.splits import DataConfig, DatasetSplits, Split
from bench.teachers.base import Preprocess, Teacher
from tests.support.dataset_fixtures import COLOURS

NAME = "fake-image-text"
SIZE, DIM, DEPTH, HEADS, JOINT_DIM, CLASSES = 12, 32, 4, 2, 16, 4
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
LAYERED = {HIDDEN, ATTN, ATTN_SCORES}  # computed only when asked for


class FakeEncoder(nn.Module):
    """A ViT-like encoder (4x4 patches, DEPTH linear blocks) and per-colour vectors of the joint image-text space."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():  # torch's default init under seed 1, the global RNG left alone
            torch.manual_seed(1)
            self.patch = nn.Conv2d(3, DIM, 4, 4)
            self.blocks = nn.ModuleList(nn.Linear(DIM, DIM) for _ in range(DEPTH))
        vectors = torch.randn(len(COLOURS), JOINT_DIM, generator=torch.Generator().manual_seed(0))
        self.register_buffer("colour_vectors", F.normalize(vectors, dim=-1))


class FakeImageTextTeacher(Teacher):
    """Frozen colour-aware image encoder with ViT-like taps and a bag-of-words text encoder in one joint space."""

    family = "test"
    modality = IMAGE_TEXT
    depth = DEPTH
    taps = (POOLED, FEATURE_MAP, TOKENS, f"{HIDDEN}.<i>", f"{ATTN}.<i>", f"{ATTN_SCORES}.<i>", IMAGE_EMBED)

    def __init__(self, name: str = NAME) -> None:
        encoder = FakeEncoder()
        super().__init__(name, encoder, Preprocess(32, MEAN, STD, "bilinear"), embed_dim=DIM, fingerprint="fake0")
        prototypes = (torch.tensor(list(COLOURS.values())) / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
        self.register_buffer("prototypes", prototypes)
        self.words = {colour: i for i, colour in enumerate(COLOURS)}

    def _patches(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feature_map = self.encoder.patch(images)
        return {FEATURE_MAP: feature_map, TOKENS: feature_map.flatten(2).transpose(1, 2)}

    def _blocks(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        x = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)  # a CLS-like first token
        for index, block in enumerate(self.encoder.blocks):
            x = x + torch.tanh(block(x))
            heads = x.view(len(x), x.shape[1], HEADS, DIM // HEADS).transpose(1, 2)
            outputs[f"{ATTN_SCORES}.{index}"] = heads @ heads.transpose(-2, -1) / 4.0
            outputs[f"{ATTN}.{index}"] = outputs[f"{ATTN_SCORES}.{index}"].softmax(-1)
            outputs[f"{HIDDEN}.{index}"] = x[:, 1:]
        return outputs

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = sorted(set(taps) - set(expand_taps(self.taps, DEPTH)))
        if unknown:
            self.check_taps(unknown)  # raises the BenchError naming them
        images = images.float()
        mean_colour = images.mean(dim=(2, 3))  # (N, 3) in normalised units
        weights = torch.softmax(-torch.cdist(mean_colour, self.prototypes) / 0.05, dim=1)
        outputs = self._patches(images)
        outputs[POOLED] = outputs[TOKENS].mean(1)
        outputs[IMAGE_EMBED] = F.normalize(weights @ self.encoder.colour_vectors, dim=-1)
        if any(tap_family(tap) in LAYERED for tap in taps):
            outputs |= self._blocks(outputs[TOKENS])
        return {tap: outputs[tap] for tap in taps}

    def _word_vector(self, word: str) -> torch.Tensor:
        if word in self.words:
            return self.encoder.colour_vectors[self.words[word]]
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return 0.15 * torch.randn(JOINT_DIM, generator=torch.Generator().manual_seed(seed))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashed bag-of-words embedding, L2-normalised, in the image_embed space."""
        rows = [torch.stack([self._word_vector(w) for w in text.lower().split()] or [torch.zeros(JOINT_DIM)]).sum(0)
                for text in texts]
        return F.normalize(torch.stack(rows).to(self.prototypes.device), dim=-1)


CARD = TeacherCard("test", tuple(expand_taps(FakeImageTextTeacher.taps, DEPTH)), IMAGE_TEXT)


@contextmanager
def registered(name: str = NAME) -> Iterator[str]:
    """The fake teacher in TEACHERS under `name` for the duration of a `with` block; yields the name."""
    with TEACHERS.temporarily(name, lambda weights=None, *, allow_download=False: FakeImageTextTeacher(name), CARD,
                              description="fake image-text teacher (tests)"):
        yield name


def tiny_images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, SIZE, SIZE, 3) images whose class is the bright quadrant, and their labels."""
    generator = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = generator.integers(0, 90, size=(n, SIZE, SIZE, 3))
    half = SIZE // 2
    for cls in range(CLASSES):
        rows, cols = divmod(cls, 2)
        images[labels == cls, rows * half:(rows + 1) * half, cols * half:(cols + 1) * half] += 160
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def tiny_splits() -> DatasetSplits:
    """train/val/test of tiny_images (the same images; only shapes and class names matter to builders)."""
    images, labels = tiny_images()
    split = Split(images, labels)
    config = DataConfig(image_size=SIZE, student_image_size=SIZE)
    return DatasetSplits("tiny", tuple(f"class{i}" for i in range(CLASSES)), split, split, split, config)
