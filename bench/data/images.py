"""uint8 image arrays -> normalised float tensors at a given square size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

STATS_CHUNK_BYTES = 32 * 2**20  # uint8 bytes read at a time by channel_stats
TO_TENSOR_CHUNK_PIXELS = 256 * 224 * 224  # to_tensor converts at most this many input pixels at a time
WHOLE_STATS_BYTES = 64 * 2**20  # channel_stats below this size: the earlier whole-array float32 computation


def to_tensor(
    images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """(N, H, W[, 3]) uint8 -> (N, 3, size, size) float32; greyscale is repeated to RGB.

    Converted TO_TENSOR_CHUNK_PIXELS input pixels at a time into the preallocated result, so the float copy at
    the input size never exists for more than a chunk (a split ImageView is read chunk by chunk too).
    """
    step = max(1, TO_TENSOR_CHUNK_PIXELS // max(1, int(np.prod(images.shape[1:3], dtype=np.int64))))
    if len(images) <= step:
        return _to_tensor(np.asarray(images), size, mean, std, interpolation)
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32)
    for start in range(0, len(images), step):
        out[start : start + step] = _to_tensor(images[start : start + step], size, mean, std, interpolation)
    return out


def _to_tensor(images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
               interpolation: str) -> torch.Tensor:
    return normalise_batch(torch.from_numpy(np.ascontiguousarray(images)), size, mean, std, interpolation)


def normalise_batch(raw: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float],
                    interpolation: str = "bilinear") -> torch.Tensor:
    """(N, H, W[, 3]) uint8 -> (N, 3, size, size) float32 on raw's device: the one copy of this maths (the whole
    split here, one batch in bench/run/loader.py, the exported model in bench/deploy/model.py)."""
    return normalise(resize(to_float(raw), size, interpolation), mean, std)


def to_float(raw: torch.Tensor) -> torch.Tensor:
    """(N, H, W[, 3]) uint8 -> (N, 3, H, W) float32 in [0, 1]; greyscale is repeated to RGB."""
    batch = raw.float().div_(255.0)
    return batch.unsqueeze(1).expand(-1, 3, -1, -1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)


def resize(batch: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize to size x size (none when it already is): antialiased bilinear or bicubic, or nearest."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    extra = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    return F.interpolate(batch, size=(size, size), mode=mode, **extra)


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel (x - mean) / std, contiguous."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(batch.device)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(batch.device)
    return ((batch - mean_t) / std_t).contiguous()


def channel_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std in [0, 1] units (greyscale gives three equal values).

    Up to WHOLE_STATS_BYTES of pixels: the whole-array float32 computation of earlier versions (bit-identical, so
    existing runs keep their normalisation). Larger: streamed over bounded chunks of rows (an ImageView reads them
    from its memmap), counting each channel's 256 byte values; those sums are exact (float32 accumulation over
    a large array was off by up to ~3e-4).
    """
    if images.nbytes <= WHOLE_STATS_BYTES:
        return _whole_channel_stats(np.asarray(images))
    channels = 1 if images.ndim == 3 else images.shape[-1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    row_bytes = max(1, int(np.prod(images.shape[1:], dtype=np.int64)))
    step = max(1, STATS_CHUNK_BYTES // row_bytes)
    for start in range(0, len(images), step):
        chunk = np.asarray(images[start : start + step]).reshape(-1, channels)
        for channel in range(channels):
            counts[channel] += np.bincount(chunk[:, channel], minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1).astype(np.float64)
    mean = counts @ levels / total
    var = np.maximum(counts @ (levels * levels) / total - mean * mean, 0.0)
    std = np.sqrt(var).astype(np.float32) + np.float32(1e-6)  # float32 as the whole-array version returned
    mean_out = [float(np.float32(m)) for m in mean]
    std_out = [float(s) for s in std]
    if channels == 1:
        return (mean_out[0],) * 3, (std_out[0],) * 3  # type: ignore[return-value]
    return tuple(mean_out), tuple(std_out)  # type: ignore[return-value]


def _whole_channel_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """channel_stats as computed before streaming: float32 over the whole array."""
    pixels = images.astype(np.float32) / 255.0
    if pixels.ndim == 3:
        mean, std = float(pixels.mean()), float(pixels.std() + 1e-6)
        return (mean, mean, mean), (std, std, std)
    mean_c = pixels.mean(axis=(0, 1, 2))
    std_c = pixels.std(axis=(0, 1, 2)) + 1e-6
    return tuple(float(v) for v in mean_c), tuple(float(v) for v in std_c)  # type: ignore[return-value]
