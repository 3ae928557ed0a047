"""What `bench list` prints, kept in a small JSON file so that listing does not import torch every time.

The registries import their unit modules (and with them torch, timm, ...) on first lookup. The listing
they produce depends only on the unit source files, so it is cached under `$BENCH_CACHE` keyed by a
fingerprint of those files (path, size, mtime) and the package version: any edit to a unit, a card or a
knob makes a new key, so a stale listing is never shown. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

REGISTRY_NAMES = ("teachers", "students", "methods", "datasets")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # bench/
SOURCES = ("teachers", "students", "methods", "datasets", "core")  # the units, their cards, knobs and registries
Rows = dict[str, list[list[str]]]  # registry -> [name, card label, description, hyperparameters ("" if none)]


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "distill-bench"))


def fingerprint(root: Path = PACKAGE_ROOT, sources: tuple[str, ...] = SOURCES) -> str:
    """A hash of every unit source file's path, size and modification time, and of the package version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = [version("distill-bench")]
    except PackageNotFoundError:
        parts = ["unversioned"]
    for source in sources:
        path = root / source
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                stat = file.stat()
                parts.append(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_rows() -> Rows:
    """Every registry's entries as rows (imports the unit modules)."""
    from bench.core.knobs import describe
    from bench.core.registries import registries

    rows: Rows = {}
    for name, registry in registries().items():
        rows[name] = []
        for entry in registry:
            knobs = ""
            if name in ("students", "methods"):
                listed = getattr(entry.obj, "listed_knobs", None)
                knobs = describe(listed or entry.obj.knobs) + (", plus every part's" if listed else "")
                departures = getattr(entry.obj, "departures", {})
                if departures:  # issue 29: a default that is not the cited implementation's says why
                    said = "; ".join(f"{k}: {why}" for k, why in departures.items())
                    knobs += f"; departs from its reference: {said}"
            rows[name].append([entry.name, entry.card.label, entry.description, knobs])
    return rows


def listing_rows() -> Rows:
    """The rows from the cache when the unit sources are unchanged, else built (and cached for next time)."""
    path = cache_dir() / f"listing-{fingerprint()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not cached yet (or unreadable): build it
        pass
    rows = build_rows()
    try:  # a cache that cannot be written only costs the next listing its speed
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            json.dump(rows, handle)
        os.replace(handle.name, path)
    except OSError:
        pass
    return rows
