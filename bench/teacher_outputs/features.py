"""Teacher passes over a dataset split, through the feature cache."""

from __future__ import annotations

import hashlib
import sys
import time
import weakref
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.core.names import SPLITS
from bench.data.imagecache import ImageView, chunk_rows
from bench.data.images import to_tensor
from bench.data.splits import DatasetSplits, Split
from bench.teacher_outputs.cache import CacheEvent, FeatureCache
from bench.teachers.base import Preprocess, Teacher


def split_fingerprint(split: Split) -> str:
    """Content hash of a split's images and labels (the cache changes when the data does).

    Read-only bases (the decoded-image memmap) are hashed once per process and set of rows: a grid over full
    COCO would otherwise re-read gigabytes for every cell's cache keys.
    """
    images = split.images
    base = images.base if isinstance(images, ImageView) else images
    memo = None
    if isinstance(base, np.ndarray) and not base.flags.writeable:
        rows = b"all" if not isinstance(images, ImageView) or images.rows is None else images.rows.tobytes()
        memo = (id(base), hashlib.sha256(rows).digest(), hashlib.sha256(split.labels.tobytes()).digest())
        known = _FINGERPRINTS.get(memo)
        if known is not None and known[0]() is base:
            return known[1]
    digest = hashlib.sha256()  # fed row chunks in order: the same digest as the whole array's bytes
    step = chunk_rows(images.shape, images.dtype.itemsize)
    for start in range(0, len(images), step):
        digest.update(np.ascontiguousarray(images[start : start + step]).tobytes())
    digest.update(split.labels.tobytes())
    fingerprint = digest.hexdigest()[:16]
    if memo is not None:
        _FINGERPRINTS[memo] = (weakref.ref(base), fingerprint)
    return fingerprint


_FINGERPRINTS: dict[tuple, tuple[weakref.ref, str]] = {}  # (base id, rows, labels) -> (base, fingerprint)


TEACHER_BATCH = 128
CPU_BATCH_PIXELS = TEACHER_BATCH * 112 * 112  # CPU passes: a batch holds at most this many input pixels


def teacher_batch_size(device: torch.device, input_size: int) -> int:
    """Images per teacher batch: 128, fewer on CPU for large inputs (activations live in host RAM there:
    EfficientNet-Lite0 at 224 px peaks at ~2.3 GB for 128 images, ~0.6 GB for 32)."""
    if device.type != "cpu":
        return TEACHER_BATCH
    return max(1, min(TEACHER_BATCH, CPU_BATCH_PIXELS // (input_size * input_size)))


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
    device: torch.device, batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Teacher outputs for every image of `split` (inference mode, bf16 autocast on CUDA), a batch of uint8 rows
    read and made float at a time; batch_size None: teacher_batch_size."""
    batch_size = batch_size or teacher_batch_size(device, preprocess.input_size)
    teacher.to(device)
    channels_last = getattr(teacher, "channels_last", True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    outputs: dict[str, torch.Tensor] = {}  # preallocated at the first batch, filled batch by batch
    rate = PassRate(f"teacher {teacher.name}", len(split))
    for start in range(0, len(split), batch_size):
        images = to_tensor(  # only this batch's uint8 rows are read (from the memmap) and made float
            split.images[start : start + batch_size], preprocess.input_size, preprocess.mean,
            preprocess.std, preprocess.interpolation,
        )
        images = (images.pin_memory() if device.type == "cuda" else images).to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            batch = teacher.features(images, taps)
        for tap in taps:
            value = batch[tap]
            if tap not in outputs:
                outputs[tap] = torch.empty((len(split), *value.shape[1:]), dtype=torch.float32)
            outputs[tap][start : start + len(value)] = value.float().cpu()
        rate.advance(min(start + batch_size, len(split)))
    return outputs


def cached_teacher_outputs(
    teacher: Teacher, data: DatasetSplits, split_name: str, taps: Sequence[str],
    cache: FeatureCache, device: torch.device,
) -> tuple[dict[str, torch.Tensor], CacheEvent]:
    """Outputs for one split, one cache entry per (teacher+weights, split content, preprocessing, tap).

    Taps already cached are read; one teacher pass computes all the others. A single-tap entry's key is the
    one earlier versions used for that tap alone, so those entries still hit; multi-tap entries are recomputed.
    """
    preprocess = teacher.preprocess.with_size(data.config.image_size)
    split = data.split(split_name)
    base = {
        "teacher": teacher.name,
        "weights": teacher.fingerprint,
        "dataset": data.name,
        "split": split_name,
        "split_content": split_fingerprint(split),
        "preprocess": preprocess.as_dict(),
    }
    parts = {tap: {**base, "taps": [tap]} for tap in sorted(set(taps))}
    return cache.get_or_compute_each(
        parts, lambda missing: run_teacher(teacher, split, preprocess, list(missing), device),
        lambda tensors: _rows_problem(tensors, len(split)),
    )


def _rows_problem(tensors: dict[str, torch.Tensor], rows: int) -> str | None:
    """Why a cached tap cannot belong to this split (another row count), else None."""
    if any(len(value) != rows for value in tensors.values()):
        return f"hold outputs for another number of images than the split's {rows}"
    return None


@dataclass
class TeacherOutputs:
    """Teacher outputs (tap -> tensor) per split and the cache events that produced them."""

    features: dict[str, dict[str, torch.Tensor]]
    events: list[CacheEvent] = field(default_factory=list)

    @property
    def teacher_seconds(self) -> float:
        return sum(event.teacher_seconds for event in self.events)


def teacher_pass(teacher: Teacher, data: DatasetSplits, taps: Sequence[str], cache: FeatureCache,
                 device: torch.device) -> TeacherOutputs:
    """The frozen teacher's taps on every split, each split through the feature cache."""
    features, events = {}, []
    for split in SPLITS:
        features[split], event = cached_teacher_outputs(teacher, data, split, taps, cache, device)
        events.append(event)
    return TeacherOutputs(features, events)

