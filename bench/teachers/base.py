"""The frozen-teacher interface: preprocessing, output dims and named feature taps."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.taps import POOLED


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for a teacher (what timm's pretrained_cfg says)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def with_size(self, size: int | None) -> Preprocess:
        """The same preprocessing at another square input size (None keeps the native one)."""
        return self if size is None else replace(self, input_size=int(size))

    def as_dict(self) -> dict[str, object]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }


class Teacher(nn.Module, metaclass=abc.ABCMeta):
    """A frozen encoder: `features(images, taps)` returns named tensors for the requested taps."""

    family: str = ""
    modality: str = "image"  # "image-text" teachers also have encode_text (see bench/teachers/clip.py)
    taps: tuple[str, ...] = (POOLED,)
    channels_last: bool = True  # conv nets run faster channels_last; ViTs set False

    def __init__(
        self, name: str, encoder: nn.Module, preprocess: Preprocess, embed_dim: int, fingerprint: str
    ) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.embed_dim = embed_dim
        self.fingerprint = fingerprint

    def train(self, mode: bool = True) -> Teacher:  # a teacher never leaves eval mode
        return super().train(False)

    def check_taps(self, taps: Sequence[str]) -> None:
        """Raise a BenchError naming the taps this teacher cannot give."""
        missing = [tap for tap in taps if tap not in self.taps]
        if missing:
            raise BenchError(
                f"teacher {self.name!r} has no tap(s) {missing}; it offers {list(self.taps)}"
            )

    @abc.abstractmethod
    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Named outputs for normalised images of shape (N, 3, S, S)."""

    def num_params(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


TeacherFactory = Callable[..., Teacher]  # (weights: str | None, *, allow_download: bool = False)


def file_fingerprint(path: Path) -> str:
    """sha256 of a weights file (first 16 hex chars): cache keys change when weights do."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint without unpickling code: safetensors, or torch with weights_only=True."""
    if not path.is_file():
        raise BenchError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure is a bad file for the user
        raise BenchError(
            f"cannot read weights file {path}: {type(error).__name__}: {str(error).splitlines()[0]}; "
            "give a safetensors file or a torch state dict"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchError(f"weights file {path} does not hold a state dict of tensors")
    return state
