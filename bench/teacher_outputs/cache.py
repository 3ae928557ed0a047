"""On-disk cache of frozen-teacher outputs per (teacher+weights, dataset split, preprocessing, taps)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.dirs import DEFAULT_CACHE_DIR
from bench.core.quarantine import quarantine

CACHE_FORMAT = 1
HASH_FIELD = "content_sha256"  # metadata field: content_hash of the file's tensors
PARTS_FIELD = "parts"  # metadata field: the key parts the entry was computed for (compared on every read)
Validator = Callable[[dict[str, torch.Tensor]], str | None]  # a reason to distrust cached values, or None
Cached = tuple[dict[str, torch.Tensor], dict[str, str]]
PASS_FIELD = "pass_id"  # metadata field: entries written by one computation share it (their seconds count once)


@dataclass(frozen=True)
class CacheEvent:
    """Whether a lookup hit, and how long the teacher pass took (now, or when it was cached)."""

    hit: bool
    teacher_seconds: float


def cache_key(parts: Mapping[str, Any]) -> str:
    """sha256 of the key parts as canonical JSON (format version included)."""
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _canonical(parts: Mapping[str, Any]) -> Any:  # noqa: ANN401 - JSON data
    """The key parts as JSON data (tuples become lists), the form they are stored and compared in."""
    return json.loads(json.dumps(parts, sort_keys=True))


def parts_mismatch(stored: str | None, parts: Mapping[str, Any]) -> str | None:
    """Which key field a cached entry's stored parts disagree on (it holds another entry's values), else None."""
    try:
        found = json.loads(stored) if stored is not None else None
    except ValueError:
        found = None
    if not isinstance(found, dict):
        return "no readable key parts"
    wanted = _canonical(parts)
    for name in sorted(set(found) | set(wanted)):
        if found.get(name) != wanted.get(name):
            held, asked = str(found.get(name))[:60], str(wanted.get(name))[:60]
            return f"another key's values ({name} {held!r}, asked for {asked!r})"
    return None


def content_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class FeatureCache:
    """Safetensors files under `root/features/`, written atomically with a content hash, verified on read.

    A file that cannot be read, fails its hash or its validator, or whose stored key parts (teacher, weights,
    dataset, split and its content hash, preprocessing, taps, ...) are not the ones asked for (a swapped or
    copied file) is moved aside (`<name>.corrupt-<time>`, said once in the log) and recomputed; a file without a
    hash (written before hashes existed) is stale and recomputed.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or DEFAULT_CACHE_DIR) / "features"
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str, validate: Validator | None = None,
             parts: Mapping[str, Any] | None = None) -> Cached | None:
        """Cached tensors and metadata, or None when absent, stale, damaged or another key's entry (`parts`: the
        key asked for; such files are moved aside)."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
                metadata = dict(handle.metadata() or {})
        except Exception as error:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            return self._reject(path, f"unreadable ({type(error).__name__}: {error})")
        if HASH_FIELD not in metadata:
            return None  # written by an older version: stale, recomputed and overwritten
        if content_hash(tensors) != metadata[HASH_FIELD]:
            return self._reject(path, "content does not match its sha256")
        mismatch = parts_mismatch(metadata.get(PARTS_FIELD), parts) if parts is not None else None
        if mismatch is not None:
            return self._reject(path, f"hold {mismatch}")
        problem = validate(tensors) if validate is not None else None
        if problem is not None:
            return self._reject(path, problem)
        return tensors, metadata

    @staticmethod
    def _reject(path: Path, reason: str) -> None:
        quarantine(path, f"cached outputs {reason}", "recomputing them")

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        """Write to a temp file in the same directory, then rename: readers never see half a file."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(handle)
        try:
            contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
            save_file(contiguous, temp_name, metadata={**metadata, HASH_FIELD: content_hash(contiguous)})
            os.replace(temp_name, self.path(key))
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)

    def get_or_compute(
        self, parts: Mapping[str, Any], compute: Callable[[], dict[str, torch.Tensor]],
        validate: Validator | None = None,
    ) -> tuple[dict[str, torch.Tensor], CacheEvent]:
        """Return cached outputs for `parts` (verified, and passing `validate`), or compute, store and return them."""
        key = cache_key(parts)
        cached = self.load(key, validate, parts)
        if cached is not None:
            tensors, metadata = cached
            self.hits += 1
            return tensors, CacheEvent(True, float(metadata.get("teacher_seconds", "nan")))
        start = time.perf_counter()
        tensors = compute()
        seconds = time.perf_counter() - start
        self.save(key, tensors, {"teacher_seconds": f"{seconds:.6f}", PARTS_FIELD: json.dumps(parts, sort_keys=True)})
        self.misses += 1
        return tensors, CacheEvent(False, seconds)

    def get_or_compute_each(
        self, parts_by_name: Mapping[str, Mapping[str, Any]],
        compute: Callable[[Sequence[str]], Mapping[str, torch.Tensor]], validate: Validator | None = None,
    ) -> tuple[dict[str, torch.Tensor], CacheEvent]:
        """One entry per name (e.g. per teacher tap): read those cached, compute all missing names in ONE call,
        store each under its own key. A second tap of the same teacher and data then runs the teacher only for it.

        The event is a hit when nothing was computed (its seconds: the passes that wrote the entries, each once);
        otherwise a miss timed by this computation alone.
        """
        found: dict[str, torch.Tensor] = {}
        seconds_by_pass: dict[str, float] = {}
        for name, parts in parts_by_name.items():
            key = cache_key(parts)
            cached = self.load(key, validate, parts)
            if cached is not None and name in cached[0]:
                found[name] = cached[0][name]
                seconds_by_pass[cached[1].get(PASS_FIELD, key)] = float(cached[1].get("teacher_seconds", "nan"))
        missing = [name for name in parts_by_name if name not in found]
        if not missing:
            self.hits += 1
            return found, CacheEvent(True, sum(seconds_by_pass.values()))
        start = time.perf_counter()
        computed = compute(missing)
        seconds = time.perf_counter() - start
        pass_id = uuid.uuid4().hex
        for name in missing:
            parts = parts_by_name[name]
            self.save(cache_key(parts), {name: computed[name]}, {
                "teacher_seconds": f"{seconds:.6f}", PARTS_FIELD: json.dumps(parts, sort_keys=True),
                PASS_FIELD: pass_id})
            found[name] = computed[name]
        self.misses += 1
        return {name: found[name] for name in parts_by_name}, CacheEvent(False, seconds)
