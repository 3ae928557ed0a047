"""A tiny image-text 'ViT-like' teacher giving every tap of the contract, and tiny class-readable data."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data import DataConfig, DatasetSplits, Split
from bench.teachers.base import Preprocess, Teacher

SIZE, DIM, DEPTH, HEADS, EMBED, CLASSES = 12, 32, 4, 2, 16, 4


class FakeEncoder(nn.Module):
    """4x4 patches -> 9 tokens of DIM, DEPTH linear blocks, a projection into a joint image-text space."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, 4, 4)
        self.blocks = nn.ModuleList(nn.Linear(DIM, DIM) for _ in range(DEPTH))
        self.image_proj = nn.Linear(DIM, EMBED)
        self.text_table = nn.Embedding(257, EMBED)


class FakeImageTextTeacher(Teacher):
    """Every tap of the shared contract: pooled, feature_map, tokens, hidden/attn/attn_scores.<i>, image_embed, text."""

    family = "fake"
    modality = "image-text"
    depth = DEPTH
    taps = ("pooled", "feature_map", "tokens", "hidden.<i>", "attn.<i>", "attn_scores.<i>", "image_embed")

    def __init__(self) -> None:
        torch.manual_seed(1)
        super().__init__("fake-image-text", FakeEncoder(), Preprocess(SIZE, (0.5,) * 3, (0.25,) * 3), DIM, "fake")

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        feature_map = self.encoder.patch(images)
        tokens = feature_map.flatten(2).transpose(1, 2)
        outputs = {"feature_map": feature_map, "tokens": tokens, "pooled": tokens.mean(1)}
        x = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)  # a CLS-like first token
        for index, block in enumerate(self.encoder.blocks):
            x = x + torch.tanh(block(x))
            heads = x.view(len(x), x.shape[1], HEADS, DIM // HEADS).transpose(1, 2)
            outputs[f"attn_scores.{index}"] = heads @ heads.transpose(-2, -1) / 4.0
            outputs[f"attn.{index}"] = outputs[f"attn_scores.{index}"].softmax(-1)
            outputs[f"hidden.{index}"] = x[:, 1:]
        outputs["image_embed"] = F.normalize(self.encoder.image_proj(outputs["pooled"]), dim=-1)
        return {tap: outputs[tap] for tap in taps}

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids = torch.tensor([zlib.crc32(text.encode()) % 257 for text in texts])
        return F.normalize(self.encoder.text_table(ids), dim=-1)


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

