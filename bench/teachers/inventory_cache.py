"""The facts `bench teachers` builds each architecture on the meta device for, kept in one JSON file.

Building every teacher takes minutes; its params, width and preprocessing change only with the installed model
libraries, bench's teacher modules, or the weights file. The file is keyed by all three, written atomically, and
rebuilt (the damaged one moved aside) when it cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.core.quarantine import quarantine

LIBRARIES = ("torch", "timm", "open_clip_torch", "transformers")
FILE_NAME = "teacher-inventory.json"


def cache_path() -> Path:
    """The inventory file under the cache root (read when called: `$BENCH_CACHE` may change in tests)."""
    from bench.core import dirs

    return Path(os.environ.get("BENCH_CACHE") or dirs.DEFAULT_CACHE_DIR) / FILE_NAME


def version_key() -> str:
    """The installed model libraries' versions and a hash of bench's teacher modules: a change rebuilds all."""
    versions = []
    for library in LIBRARIES:
        try:
            versions.append(f"{library}={metadata.version(library)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{library}=none")
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return ";".join(versions) + ";teachers=" + digest.hexdigest()[:16]


def entry_key(name: str, weights: Path | None) -> str:
    """One teacher with one weights file (its size and time stamp: replaced weights are described again)."""
    if weights is None or not weights.exists():
        return f"{name}|-"
    stat = weights.stat()
    return f"{name}|{weights}|{stat.st_size}|{stat.st_mtime_ns}"


def read_entries(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """The stored facts for this version key; {} for a missing, stale or damaged file (a damaged one moved aside)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or not isinstance(stored.get("teachers"), dict):
            raise ValueError("not an inventory mapping")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        quarantine(path, f"unreadable teacher inventory ({error})", "rebuilding it")
        return {}
    return stored["teachers"] if stored.get("key") == key else {}


def write_entries(path: Path, key: str, entries: dict[str, dict[str, Any]]) -> None:
    """Write the file atomically (a temporary file renamed over it); an unwritable cache only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"key": key, "teachers": entries}, file)
        os.replace(temporary, path)
    except OSError:
        return
