"""uint8 image arrays -> normalised float tensors at a given square size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(
    images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """(N, H, W[, 3]) uint8 -> (N, 3, size, size) float32; greyscale is repeated to RGB."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    batch = batch.unsqueeze(1).expand(-1, 3, -1, -1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
    if batch.shape[-1] != size or batch.shape[-2] != size:
        mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
        extra = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
        batch = F.interpolate(batch, size=(size, size), mode=mode, **extra)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous()


def channel_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std in [0, 1] units (greyscale gives three equal values)."""
    pixels = images.astype(np.float32) / 255.0
    if pixels.ndim == 3:
        mean, std = float(pixels.mean()), float(pixels.std() + 1e-6)
        return (mean, mean, mean), (std, std, std)
    mean_c = pixels.mean(axis=(0, 1, 2))
    std_c = pixels.std(axis=(0, 1, 2)) + 1e-6
    return tuple(float(v) for v in mean_c), tuple(float(v) for v in std_c)  # type: ignore[return-value]
