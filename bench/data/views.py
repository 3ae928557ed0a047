"""Augmented views as parameters: drawn once, rendered at any size, so teacher and student see the same view.

A view of image i is an affine map of its square image (crop box and mirror, in grid_sample's [-1, 1] units, so
the same parameters render the teacher's 224 px input and the student's 32 px one), and under `mixup` also a
partner image, the partner's own crop and a mixing ratio. `teacher_views: cached` draws view v of image i from a
counter-based generator keyed by (view seed, image index, view index): the same view in every process, worker
and run, whatever else was drawn. `online` draws from the run's seeded generator, batch by batch. Both map
uniform numbers through `params_from_uniforms`, so the two modes draw from one distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.images import normalise, resize, to_float

PAD = 4  # crop-pad-flip: CIFAR's padding in pixels of the student's size (RandomCrop(32, padding=4))
CROP_SCALE = (0.25, 1.0)  # random-resized-crop: share of the image area kept
CROP_RATIO = (3 / 4, 4 / 3)  # and the crop's aspect ratio
VIEW_AUGMENTS = ("flip", "crop-flip", "crop-pad-flip", "mixup")
UNIFORMS = 11  # per view: flip, area, ratio, x, y (crop); partner, ratio, and the partner's flip, area, x, y
OFFSET_STREAM = 2**32  # keyed_uniforms' view index of the per-image view offsets (no view has it)
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014), element-wise on uint64: a well-mixed hash of a counter."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def keyed_uniforms(seed: int, images: np.ndarray, view: int, count: int = UNIFORMS) -> torch.Tensor:
    """(len(images), count) float64 uniforms in [0, 1), each a hash of (seed, image index, view, draw): view
    `view` of image i is the same whichever other images or views are drawn, in any process."""
    images = np.asarray(images, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix(_splitmix(np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(view)) ^ images)
        draws = _splitmix(key[:, None] ^ (np.arange(count, dtype=np.uint64)[None, :] * np.uint64(0xD6E8FEB86659FD93)))
    return torch.from_numpy((draws >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def view_offsets(seed: int, images: np.ndarray, count: int) -> torch.Tensor:
    """Per image, where its cycle through the `count` cached views starts (seeded by the run's seed)."""
    return (keyed_uniforms(seed, images, view=OFFSET_STREAM, count=1)[:, 0] * count).long().clamp(max=count - 1)


def _crop_theta(flip: torch.Tensor, area: torch.Tensor, ratio: torch.Tensor, x: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) random-resized-crop maps from uniforms (the distribution of bench/run/loader.py crop_boxes)."""
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * area
    log_ratio = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * ratio
    width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    return box_theta(flip < 0.5, width, height, (x * 2 - 1) * (1 - width), (y * 2 - 1) * (1 - height))


def box_theta(mirror: torch.Tensor, width: torch.Tensor, height: torch.Tensor, centre_x: torch.Tensor,
              centre_y: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) float32 affine maps of crop boxes (width, height, centre in [-1, 1] units), mirrored where asked."""
    theta = torch.zeros(len(mirror), 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = torch.where(mirror, -width, width).float()
    theta[:, 0, 2] = centre_x.float()
    theta[:, 1, 1] = height.float()
    theta[:, 1, 2] = centre_y.float()
    return theta


def _pad_theta(flip: torch.Tensor, x: torch.Tensor, y: torch.Tensor, student_size: int) -> torch.Tensor:
    """(n, 2, 3) maps of CIFAR's pad-by-PAD random crop and mirror, as shifts of whole student pixels."""
    shift_x = (x * (2 * PAD + 1)).floor().clamp(max=2 * PAD) - PAD
    shift_y = (y * (2 * PAD + 1)).floor().clamp(max=2 * PAD) - PAD
    theta = torch.zeros(len(flip), 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = torch.where(flip < 0.5, -1.0, 1.0)
    theta[:, 0, 2] = (shift_x * 2 / student_size).float()
    theta[:, 1, 1] = 1.0
    theta[:, 1, 2] = (shift_y * 2 / student_size).float()
    return theta


def params_from_uniforms(u: torch.Tensor, mode: str, train_rows: int, student_size: int) -> dict[str, torch.Tensor]:
    """A batch of views' parameters from (n, UNIFORMS) uniforms: `theta` (n, 2, 3); under mixup also `partner`
    (train row), `partner_theta` and `lam` (the image's share, ~ U(0, 1) as big_vision's mixup p=1.0)."""
    u = u.double()
    n = len(u)
    if mode == "flip":
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
        theta[:, 1, 1] = 1.0
        return {"theta": theta}
    if mode == "crop-pad-flip":
        return {"theta": _pad_theta(u[:, 0], u[:, 3], u[:, 4], student_size)}
    params = {"theta": _crop_theta(u[:, 0], u[:, 1], u[:, 2], u[:, 3], u[:, 4])}
    if mode == "mixup":
        params["partner"] = (u[:, 5] * train_rows).long().clamp(max=train_rows - 1)
        params["lam"] = u[:, 6].float()
        params["partner_theta"] = _crop_theta(u[:, 7], u[:, 8], u[:, 2], u[:, 9], u[:, 10])
    return params


def render(raw: torch.Tensor, theta: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float],
           mode: str, interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 (n, H, W[, 3]) images through their views' maps, as normalised (n, 3, size, size) floats on raw's
    device: resized first (antialiased, to twice `size` for crops), then sampled bilinearly; crop-pad-flip pads
    black, the crops repeat the border."""
    images = to_float(raw)
    if mode in ("flip", "crop-pad-flip"):
        images = resize(images, size, interpolation)
    else:
        images = resize(images, min(images.shape[-1], 2 * size), interpolation)
    grid = F.affine_grid(theta.to(images.device, torch.float32), [len(images), 3, size, size], align_corners=False)
    padding = "zeros" if mode == "crop-pad-flip" else "border"
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return normalise(sampled, mean, std)


def render_views(raw: torch.Tensor, partner_raw: torch.Tensor | None, params: dict[str, torch.Tensor], size: int,
                 mean: Sequence[float], std: Sequence[float], mode: str,
                 interpolation: str = "bilinear") -> torch.Tensor:
    """The views of a batch at `size`: its images through `theta`, mixed with their partners under mixup
    (the mixed normalised image is the mix of the normalised images: normalisation is affine)."""
    base = "crop-flip" if mode == "mixup" else mode
    batch = render(raw, params["theta"], size, mean, std, base, interpolation)
    if mode != "mixup":
        return batch
    assert partner_raw is not None
    partner = render(partner_raw, params["partner_theta"], size, mean, std, base, interpolation)
    lam = params["lam"].to(batch.device).view(-1, 1, 1, 1)
    return (lam * batch + (1 - lam) * partner).contiguous()
