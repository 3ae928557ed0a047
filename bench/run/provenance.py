"""Where a run came from: git commit of the code, torch version, device name."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout that holds this code, with '-dirty' when it has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit[:12]}-dirty" if dirty else commit[:12]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)[:64]
    return "cpu"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
