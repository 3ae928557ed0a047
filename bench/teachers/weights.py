"""Where a teacher's weights come from, offline first: explicit path, $BENCH_WEIGHTS, library cache, download."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class WeightsSpec:
    """What a teacher's weights look like and how its library finds (or fetches) them."""

    teacher: str
    files: tuple[str, ...]  # preferred file names inside a weights directory
    cache_label: str  # e.g. "HF cache (timm/vit_small_patch16_224.dino)"
    cache_lookup: Callable[[], Path | None]  # never touches the network
    download: Callable[[], Path] | None = None
    directory: bool = False  # the weights are a whole directory (a transformers save_pretrained dir)


@dataclass(frozen=True)
class ResolvedWeights:
    """A local weights file or directory, where it was found, and its content fingerprint."""

    path: Path
    origin: str  # explicit | bench-weights | cache | download
    fingerprint: str


def hf_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids network access."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def weights_dir_name(teacher: str) -> str:
    """Directory name under $BENCH_WEIGHTS for a teacher (`hf:org/repo` -> `hf--org--repo`)."""
    return teacher.replace(":", "--").replace("/", "--")


def fingerprint_path(path: Path) -> str:
    """sha256 (16 hex chars) of a weights file, or of every weights file in a directory."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def weights_file_in(directory: Path, files: tuple[str, ...]) -> Path | None:
    """The preferred weights file in `directory`, else its only weights-looking file."""
    for name in files:
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return found[0] if len(found) == 1 else None


def _usable(path: Path, spec: WeightsSpec) -> Path | None:
    """`path` itself (file, or directory for directory weights) or the weights file inside it."""
    if spec.directory:
        return path if path.is_dir() and (path / "config.json").is_file() else None
    if path.is_file():
        return path
    return weights_file_in(path, spec.files) if path.is_dir() else None


def _explicit(spec: WeightsSpec, weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.exists():
        raise BenchError(f"weights for teacher {spec.teacher!r} not found: {path} does not exist")
    usable = _usable(path, spec)
    if usable is None and path.is_file():
        raise BenchError(f"weights for teacher {spec.teacher!r} must be a save_pretrained directory, not {path}")
    if usable is None:
        wanted = "no config.json (a save_pretrained directory)" if spec.directory else (
            f"none of {', '.join(spec.files)} and no single weights file"
        )
        raise BenchError(f"weights for teacher {spec.teacher!r}: directory {path} holds {wanted}")
    return usable


def _download(spec: WeightsSpec, places: list[str]) -> Path | None:
    if spec.download is None:
        places.append("download: this teacher has no download source")
        return None
    if hf_offline():
        places.append("download: refused because HF_HUB_OFFLINE is set")
        return None
    try:
        return spec.download()
    except Exception as error:  # noqa: BLE001 - any download failure is reported as a user-fixable miss
        places.append(f"download: failed ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
        return None


def resolve_weights(spec: WeightsSpec, weights: str | None, allow_download: bool = False) -> ResolvedWeights:
    """Explicit path -> $BENCH_WEIGHTS/<teacher>/ -> library cache -> download (only if allowed)."""
    if weights:
        path = _explicit(spec, weights)
        return ResolvedWeights(path, "explicit", fingerprint_path(path))
    places = ["explicit weights: none given"]
    root = os.environ.get("BENCH_WEIGHTS")
    bench_dir = Path(root).expanduser() / weights_dir_name(spec.teacher) if root else None
    if bench_dir is not None and (found := _usable(bench_dir, spec)) is not None:
        return ResolvedWeights(found, "bench-weights", fingerprint_path(found))
    places.append(f"{bench_dir}/: empty or missing" if bench_dir else "$BENCH_WEIGHTS: not set")
    cached = spec.cache_lookup()
    if cached is not None:
        return ResolvedWeights(cached, "cache", fingerprint_path(cached))
    places.append(f"{spec.cache_label}: not cached")
    if allow_download and (downloaded := _download(spec, places)) is not None:
        return ResolvedWeights(downloaded, "download", fingerprint_path(downloaded))
    raise BenchError(missing_message(spec, places, allow_download))


def missing_message(spec: WeightsSpec, places: list[str], allow_download: bool) -> str:
    """One line: every place looked at and the exact file or directory to put there."""
    target = f"$BENCH_WEIGHTS/{weights_dir_name(spec.teacher)}/"
    what = f"a save_pretrained directory (config.json + weights) as {target}" if spec.directory else (
        f"{target}{spec.files[0]}"
    )
    hint = "" if allow_download else ", or rerun with --allow-download"
    return (
        f"no weights for teacher {spec.teacher!r}; looked at: {'; '.join(places)}. "
        f"Put {what}, or give `weights: {{{spec.teacher}: PATH}}` in the grid / --weights {spec.teacher}=PATH{hint}"
    )


def hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of `filenames` already in the Hugging Face cache for `repo_id` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot directory of `repo_id` if it holds a config.json (no network)."""
    found = hf_cached_file(repo_id, ("config.json",))
    return found.parent if found is not None else None


def hf_download_file(repo_id: str, filename: str) -> Callable[[], Path]:
    """A downloader for one file of a hub repo (called only when downloads are allowed)."""

    def download() -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename))

    return download


def hf_download_snapshot(repo_id: str) -> Callable[[], Path]:
    """A downloader for a whole hub repo (weights as safetensors, configs, tokenizer)."""

    def download() -> Path:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
        return Path(snapshot_download(repo_id, allow_patterns=patterns))

    return download
