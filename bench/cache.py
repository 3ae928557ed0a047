"""On-disk cache of frozen-teacher outputs per (teacher+weights, dataset split, preprocessing, taps)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_CACHE_DIR = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "distill-bench"))
CACHE_FORMAT = 1


@dataclass(frozen=True)
class CacheEvent:
    """Whether a lookup hit, and how long the teacher pass took (now, or when it was cached)."""

    hit: bool
    teacher_seconds: float


def cache_key(parts: Mapping[str, Any]) -> str:
    """sha256 of the key parts as canonical JSON (format version included)."""
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class FeatureCache:
    """Safetensors files under `root/features/`, written atomically, recomputed if unreadable."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or DEFAULT_CACHE_DIR) / "features"
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """Cached tensors and metadata, or None when absent or unreadable."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
                metadata = dict(handle.metadata() or {})
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            return None
        return tensors, metadata

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        """Write to a temp file in the same directory, then rename: readers never see half a file."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(handle)
        try:
            contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
            save_file(contiguous, temp_name, metadata=dict(metadata))
            os.replace(temp_name, self.path(key))
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)

    def get_or_compute(
        self, parts: Mapping[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
    ) -> tuple[dict[str, torch.Tensor], CacheEvent]:
        """Return cached outputs for `parts`, or compute, store and return them."""
        key = cache_key(parts)
        cached = self.load(key)
        if cached is not None:
            tensors, metadata = cached
            self.hits += 1
            return tensors, CacheEvent(True, float(metadata.get("teacher_seconds", "nan")))
        start = time.perf_counter()
        tensors = compute()
        seconds = time.perf_counter() - start
        self.save(key, tensors, {"teacher_seconds": f"{seconds:.6f}", "parts": json.dumps(parts, sort_keys=True)})
        self.misses += 1
        return tensors, CacheEvent(False, seconds)
