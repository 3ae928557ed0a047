"""Teacher passes over a dataset split, through the feature cache."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from bench.cache import CacheEvent, FeatureCache
from bench.data import DatasetSplits, Split
from bench.images import to_tensor
from bench.teachers.base import Preprocess, Teacher


def split_fingerprint(split: Split) -> str:
    """Content hash of a split's images and labels (the cache changes when the data does)."""
    digest = hashlib.sha256()
    digest.update(split.images.tobytes())
    digest.update(split.labels.tobytes())
    return digest.hexdigest()[:16]


class PassRate:
    """Says images/s on stderr every `every_s` seconds of a long teacher pass (short passes stay quiet)."""

    def __init__(self, what: str, total: int, every_s: float = 10.0) -> None:
        self.what, self.total, self.every_s = what, total, every_s
        self.start = self.last = time.perf_counter()

    def advance(self, done: int) -> str | None:
        """The line printed now (or None): images done so far and their rate."""
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return None
        self.last = now
        line = f"{self.what}: {done}/{self.total} images, {done / (now - self.start):.0f} images/s"
        print(line, file=sys.stderr, flush=True)  # a live progress display shows it above its bars
        return line


@torch.inference_mode()
def run_teacher(
    teacher: Teacher, split: Split, preprocess: Preprocess, taps: Sequence[str],
    device: torch.device, batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Teacher outputs for every image of `split` (inference mode, bf16 autocast on CUDA)."""
    teacher.to(device)
    channels_last = getattr(teacher, "channels_last", True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    chunks: dict[str, list[torch.Tensor]] = {tap: [] for tap in taps}
    rate = PassRate(f"teacher {teacher.name}", len(split))
    for start in range(0, len(split), batch_size):
        images = to_tensor(
            split.images[start : start + batch_size], preprocess.input_size, preprocess.mean,
            preprocess.std, preprocess.interpolation,
        )
        images = (images.pin_memory() if device.type == "cuda" else images).to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            outputs = teacher.features(images, taps)
        for tap in taps:
            chunks[tap].append(outputs[tap].float().cpu())
        rate.advance(min(start + batch_size, len(split)))
    return {tap: torch.cat(chunks[tap]) for tap in taps}


def cached_teacher_outputs(
    teacher: Teacher, data: DatasetSplits, split_name: str, taps: Sequence[str],
    cache: FeatureCache, device: torch.device,
) -> tuple[dict[str, torch.Tensor], CacheEvent]:
    """Outputs for one split, computed once per (teacher+weights, split content, preprocessing, taps)."""
    preprocess = teacher.preprocess.with_size(data.config.image_size)
    split = data.split(split_name)
    parts = {
        "teacher": teacher.name,
        "weights": teacher.fingerprint,
        "dataset": data.name,
        "split": split_name,
        "split_content": split_fingerprint(split),
        "preprocess": preprocess.as_dict(),
        "taps": sorted(taps),
    }
    return cache.get_or_compute(
        parts, lambda: run_teacher(teacher, split, preprocess, sorted(taps), device)
    )
