"""Where a dataset's root is looked for: --data-root, $BENCH_DATA/<name>, then the usual places."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import BenchError

USUAL_PLACES = (Path.home() / "data", Path.home() / "datasets", Path("/data"), Path("/datasets"),
                Path("/usr/share/datasets"))


def candidate_roots(name: str, folder: str, data_root: Path | None) -> list[Path]:
    """Directories that may hold dataset `name` (official folder name `folder`), in search order."""
    bases: list[Path] = []
    if data_root is not None:
        bases.append(Path(data_root))
    if os.environ.get("BENCH_DATA"):
        bench_data = Path(os.environ["BENCH_DATA"])
        bases += [bench_data / name, bench_data]
    bases += list(USUAL_PLACES)
    found: list[Path] = []
    for base in bases:
        for candidate in (base / folder, base / name, base):
            if candidate not in found:
                found.append(candidate)
    return found


def find_root(name: str, folder: str, data_root: Path | None, is_root: Callable[[Path], bool],
              layout: str) -> Path:
    """The first candidate directory that `is_root` accepts, or one BenchError naming the layout."""
    candidates = candidate_roots(name, folder, data_root)
    for candidate in candidates:
        if candidate.is_dir() and is_root(candidate):
            return candidate
    shown = ", ".join(str(c) for c in candidates[:4])
    raise BenchError(
        f"{name} not found (looked in {shown}, ...): expected {layout}; pass --data-root DIR or set $BENCH_DATA"
    )


def require(path: Path, name: str, layout: str) -> Path:
    """`path` if it exists, else one BenchError naming the missing file and the expected layout."""
    if not path.exists():
        raise BenchError(f"{name}: missing {path}; expected {layout}")
    return path
