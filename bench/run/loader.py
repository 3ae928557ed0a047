"""Image students' input pipeline: uint8 batches of a split, read by index, made float at the student's size.

A split's images stay uint8 (a view of the decoded-image cache); only one batch at a time becomes float, on the
device that trains (the uint8 batch crosses to the GPU, 4x smaller than float, and is resized there). The maths
is bench/data/images.py `to_tensor`'s (antialiased bilinear resize, per-channel normalisation), so a default run
scores as before. Train batches come through a torch DataLoader (workers gather rows, pinned memory on CUDA);
the batch order is still drawn by the run's seeded generator in the main process, so workers never change it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.images import normalise, normalise_batch, resize, to_float
from bench.data.views import CROP_RATIO, CROP_SCALE, PAD, box_theta
from bench.run.fast import to_memory_format

AUGMENTS = ("none", "flip", "crop-flip", "crop-pad-flip")  # teacher_views fixed (mixup: bench/data/views.py)


@dataclass(frozen=True)
class ImageInputs:
    """A split's uint8 images as student inputs at `size`: indexing gives float batches, never the whole split.

    `images` is anything with len(), .shape and numpy fancy indexing returning uint8 arrays (the split's images);
    `rows` selects a subset of them (data.labeled_limit) without copying.
    """

    images: Any
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    def take(self, rows: np.ndarray | torch.Tensor) -> ImageInputs:
        """The subset `rows` (positions in this view), still lazy."""
        rows = np.asarray(rows, dtype=np.int64)
        return ImageInputs(self.images, self.size, self.mean, self.std,
                           rows if self.rows is None else self.rows[rows])

    def raw(self, index: np.ndarray | torch.Tensor | slice) -> torch.Tensor:
        """The uint8 batch at `index` (positions in this view), as read from the images."""
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        positions = np.asarray(index, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        return torch.from_numpy(np.ascontiguousarray(self.images[rows]))

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        """A uint8 batch (on any device) as normalised float student inputs."""
        return normalise_batch(raw, self.size, self.mean, self.std)

    def __getitem__(self, index: np.ndarray | torch.Tensor | slice) -> torch.Tensor:
        """Float inputs of the rows at `index`, on the CPU (the tensor path's `inputs[index]`)."""
        return self.prepare(self.raw(index))


def select_rows(inputs: torch.Tensor | ImageInputs, rows: torch.Tensor) -> torch.Tensor | ImageInputs:
    """A subset of student inputs: a tensor's rows, or a lazy view of image inputs."""
    return inputs.take(rows.numpy()) if isinstance(inputs, ImageInputs) else inputs[rows]


class _RawBatches(Dataset):
    """Map-style dataset whose items are whole batches: an index array in, (index, uint8 batch) out."""

    def __init__(self, inputs: ImageInputs) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return index, self.inputs.raw(index.numpy())


class _OrderSampler(Sampler):
    """Yields the current epoch's batches of row indices (set by the trainer from its seeded generator)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchLoader:
    """Train batches of image inputs: (index, uint8 batch) through a DataLoader with workers and pinned memory."""

    def __init__(self, inputs: ImageInputs, workers: int, pin: bool) -> None:
        self.sampler = _OrderSampler()
        self.loader = DataLoader(_RawBatches(inputs), batch_size=None, sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin, persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers > 0 else None)

    def epoch(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches in this order, each as (index, uint8 batch)."""
        self.sampler.batches = batches
        return iter(self.loader)


def default_workers(device: torch.device) -> int:
    """Loader workers when the knob is unset: none on the CPU (they would compete with training), some on CUDA."""
    import os

    return 0 if device.type != "cuda" else max(0, min(6, (os.cpu_count() or 1) - 2))


def augment_batch(raw: torch.Tensor, inputs: ImageInputs, mode: str, generator: torch.Generator) -> torch.Tensor:
    """A uint8 batch as augmented float inputs: `flip` mirrors half the images, `crop-flip` also takes a random
    resized crop (scale CROP_SCALE, ratio CROP_RATIO), `crop-pad-flip` CIFAR's pad-by-PAD (black) and random crop
    back to the student's size. The draws come from `generator` (CPU, seeded per run); the pixels move on the
    batch's device."""
    if mode == "none":
        return inputs.prepare(raw)
    n = raw.shape[0]
    flips = torch.rand(n, generator=generator) < 0.5
    if mode == "flip":
        batch = inputs.prepare(raw)
        return torch.where(flips.to(batch.device).view(-1, 1, 1, 1), batch.flip(-1), batch)
    if mode == "crop-pad-flip":
        offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
        return normalise(pad_crop_flip(resize(to_float(raw), inputs.size), offsets, flips), inputs.mean, inputs.std)
    theta = crop_boxes(n, flips, generator).to(raw.device)
    images = to_float(raw)
    images = resize(images, min(images.shape[-1], 2 * inputs.size))  # antialiased first, so the crop aliases less
    grid = F.affine_grid(theta, [n, 3, inputs.size, inputs.size], align_corners=False)
    cropped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return normalise(cropped, inputs.mean, inputs.std)


def pad_crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) images in [0, 1], zero-padded by PAD, cropped back to S at (row, column) `offsets` in
    [0, 2 * PAD] and mirrored where `flips`: torchvision's RandomCrop(S, padding=PAD) + RandomHorizontalFlip."""
    n, _, size, _ = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    offsets, flips = offsets.to(images.device), flips.to(images.device)
    span = torch.arange(size, device=images.device)
    rows = (offsets[:, 0:1] + span).view(n, 1, size, 1)
    columns = torch.where(flips.view(n, 1), offsets[:, 1:2] + size - 1 - span, offsets[:, 1:2] + span)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(3, device=images.device).view(1, 3, 1, 1)
    return padded[batch, channel, rows, columns.view(n, 1, 1, size)]


def crop_boxes(n: int, flips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine maps of random-resized crops (mirrored where `flips`), in grid_sample's [-1, 1] units."""
    area = torch.empty(n).uniform_(*CROP_SCALE, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator)
    ratio = log_ratio.exp()
    width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    return box_theta(flips, width, height, centre_x, centre_y)


def eval_batches(inputs: torch.Tensor | ImageInputs, device: torch.device, batch_size: int,
                 channels_last: bool = False) -> Iterator[torch.Tensor]:
    """Every row of `inputs` in order, `batch_size` at a time, as float batches on `device` (images made float
    there, from their uint8 rows)."""
    for start in range(0, len(inputs), batch_size):
        rows = slice(start, start + batch_size)
        if isinstance(inputs, ImageInputs):
            batch = inputs.prepare(inputs.raw(rows).to(device, non_blocking=True))
        else:
            batch = inputs[rows].to(device)
        yield to_memory_format(batch, channels_last)
