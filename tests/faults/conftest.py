"""Fault fixtures: a small tmpfs (as root; skipped where mounting is not allowed) to fill or make read-only."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs of that size ("2m"); all are unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)):
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def remount_read_only(point: Path) -> None:
    """The tmpfs at `point` becomes read-only (root ignores file modes, a read-only mount it cannot)."""
    assert _mount("-o", "remount,ro", str(point)), f"cannot remount {point} read-only"


def fill(point: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about `leave_bytes` free on the mount; delete it to free the space."""
    import os

    filler = point / "filler"
    with filler.open("wb") as stream:
        free = os.statvfs(point).f_bavail * os.statvfs(point).f_frsize
        stream.write(b"\0" * max(0, free - leave_bytes))
    return filler
