"""Where things live for a sweep (`RunContext`), torch-free: a command that finds nothing to run never loads torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunContext:
    """Where things live for a sweep."""

    cache_dir: Path | None = None
    data_root: Path | None = None
    device: str = "auto"
    allow_download: bool = False  # teachers may fetch weights, torchvision data (--allow-download; never in tests)
    skip_bad: bool = False  # leave corrupt images out, for every dataset (--skip-bad)
    threads: int | None = None  # torch/BLAS threads of this process (--threads); None leaves them as they are
