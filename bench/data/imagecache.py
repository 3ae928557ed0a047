"""Decoded, resized uint8 images in a memory-mapped .npy cache shared by every run.

Key: (dataset, split, size, file-list fingerprint of paths + sizes + mtimes). The array is written
to a temp file and renamed, then a small JSON (the commit marker) lists any undecodable files and records the
key, shape and sha256 of the array it commits. Every read compares them with the key asked for (the sha256 once
per process and file): a swapped, copied or damaged pair is moved aside and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.quarantine import quarantine

CACHE_FORMAT = 1
CHUNK = 256
VIEW_CHUNK_BYTES = 32 * 2**20  # rows read at a time when a view is hashed, iterated or streamed


class ImageView:
    """Rows `rows` of a uint8 image array (usually the decoded-image memmap), read from it only when indexed.

    Splits hold these instead of copies, so a split of full COCO at 224 px costs its index array, not its pixels.
    Indexing (an int, a slice, an int or bool array) returns a real np.ndarray of just those rows.
    """

    def __init__(self, base: np.ndarray | ImageView, rows: np.ndarray | None = None) -> None:
        if isinstance(base, ImageView):  # a view of a view reads the same base through composed rows
            rows = base.rows if rows is None else base._rows_of(np.asarray(rows))
            base = base.base
        self.base = base
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        """Bytes of the pixels this view stands for (not what it holds)."""
        return len(self) * int(np.prod(self.base.shape[1:], dtype=np.int64)) * self.base.dtype.itemsize

    def __len__(self) -> int:
        return len(self.base) if self.rows is None else len(self.rows)

    def _rows_of(self, key: object) -> np.ndarray | slice | int:
        """The base rows that `key` (an index into this view) names."""
        if isinstance(key, np.ndarray) and key.dtype == bool:
            key = np.flatnonzero(key)
        if self.rows is None:
            return key  # type: ignore[return-value]
        return self.rows[key]  # type: ignore[index]

    def __getitem__(self, key: object) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError("ImageView takes one row index (int, slice or index array), not a tuple")
        if not isinstance(key, (int, np.integer, slice)):
            key = np.asarray(key)
            if key.dtype != bool and not np.issubdtype(key.dtype, np.integer):
                raise IndexError(f"ImageView index must be integers or booleans, got {key.dtype}")
        return np.array(self.base[self._rows_of(key)], copy=True)

    def take(self, indices: np.ndarray) -> ImageView:
        """A view of these rows of this view (nothing is read)."""
        return ImageView(self, np.asarray(indices, dtype=np.int64))

    def chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The view's rows in order, a bounded chunk at a time."""
        step = rows or chunk_rows(self.shape, self.dtype.itemsize)
        for start in range(0, len(self), step):
            yield self[start : start + step]

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks():
            yield from chunk

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """Every row at once, for callers that need a whole array (small data, tests)."""
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)


def chunk_rows(shape: Sequence[int], itemsize: int = 1, budget: int = VIEW_CHUNK_BYTES) -> int:
    """How many rows of an array of `shape` fit in `budget` bytes (at least one)."""
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return max(1, budget // max(row, 1))


@dataclass(frozen=True)
class DecodedImages:
    """(N_kept, S, S, 3) uint8 images, the indices of the input paths they came from, the bad files."""

    images: np.ndarray | ImageView
    kept: np.ndarray
    bad: tuple[str, ...]


def default_cache_root() -> Path:
    from bench.core.dirs import DEFAULT_CACHE_DIR

    return DEFAULT_CACHE_DIR


def file_list_fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over each file's path, size and mtime: the cache changes when any file does."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:24]


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image -> (size, size, 3) uint8: RGB (greyscale/CMYK converted), centre crop, bicubic resize."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when that is enough
        rgb = image.convert("RGB")
        fitted = ImageOps.fit(rgb, (size, size), Image.Resampling.BICUBIC)
        return np.asarray(fitted, dtype=np.uint8)


def _decode_chunk(paths: Sequence[Path], size: int, out: np.ndarray, start: int) -> list[int]:
    """Decode paths into out[start:]; returns the offsets of files that could not be decoded."""
    from PIL import Image

    bad = []
    for offset, path in enumerate(paths):
        try:
            out[start + offset] = decode_image(path, size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            bad.append(start + offset)
    return bad


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(2**24), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: a file is hashed once per process


def _array_sha256(path: Path) -> str:
    stat = path.stat()
    identity = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if identity not in _VERIFIED:
        _VERIFIED[identity] = _file_sha256(path)
    return _VERIFIED[identity]


def _entry_problem(meta: dict, key: str, shape: tuple[int, ...], array_path: Path) -> str | None:
    """Why a committed entry is not the one asked for (another key's, another shape, changed bytes), else None."""
    if meta.get("key") != key:
        return f"it holds entry {str(meta.get('key'))[:32]!r}, not {key!r}"
    if tuple(meta.get("shape") or ()) != shape:
        return f"it holds shape {meta.get('shape')}, not {list(shape)}"
    if _array_sha256(array_path) != meta.get("sha256"):
        return "its array does not match the sha256 its commit marker holds"
    return None


def _write(paths: Sequence[Path], size: int, array_path: Path, meta_path: Path, workers: int, key: str) -> None:
    array_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=array_path.parent, suffix=".npy.tmp")
    os.close(handle)
    try:
        out = np.lib.format.open_memmap(temp_name, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        starts = range(0, len(paths), CHUNK)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            bad_lists = list(pool.map(lambda s: _decode_chunk(paths[s : s + CHUNK], size, out, s), starts))
        out.flush()
        os.replace(temp_name, array_path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    bad = sorted(index for chunk in bad_lists for index in chunk)
    meta = {"format": CACHE_FORMAT, "count": len(paths), "size": size, "bad": bad,
            "bad_files": [str(paths[i]) for i in bad], "key": key, "shape": [len(paths), size, size, 3],
            "sha256": _array_sha256(array_path)}
    handle, temp_meta = tempfile.mkstemp(dir=meta_path.parent, suffix=".json.tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(meta, stream)
    os.replace(temp_meta, meta_path)


def cached_images(paths: Sequence[Path], size: int, tag: str, cache_root: Path | None = None,
                  skip_bad: bool = False, workers: int | None = None) -> DecodedImages:
    """Decode `paths` once into a shared memmap cache; corrupt files fail (or are skipped under skip_bad)."""
    paths = [Path(p) for p in paths]
    if not paths:
        return DecodedImages(np.zeros((0, size, size, 3), dtype=np.uint8), np.zeros(0, dtype=np.int64), ())
    root = Path(cache_root or default_cache_root()) / "images"
    key = hashlib.sha256(f"{CACHE_FORMAT}|{tag}|{size}|{file_list_fingerprint(paths)}".encode()).hexdigest()[:32]
    array_path, meta_path = root / f"{key}.npy", root / f"{key}.json"
    meta = _read_meta(meta_path)
    if meta is not None and array_path.is_file():
        problem = _entry_problem(meta, key, (len(paths), size, size, 3), array_path)
        if problem is not None:  # said once: the pair is moved aside, so the next read finds the new one
            quarantine(meta_path, f"decoded-image cache entry rejected: {problem}", "decoding the images again")
            quarantine(array_path, "its commit marker was rejected", "decoding the images again")
            meta = None
    if meta is None or not array_path.is_file():
        _write(paths, size, array_path, meta_path, workers or min(8, os.cpu_count() or 1), key)
        meta = _read_meta(meta_path)
        assert meta is not None
    bad = list(meta["bad"])
    if bad and not skip_bad:
        raise BenchError(
            f"{tag}: cannot decode image {meta['bad_files'][0]} ({len(bad)} bad file(s) in all); "
            "replace it or pass --skip-bad to leave bad images out"
        )
    images = np.load(array_path, mmap_mode="r")
    kept = np.setdiff1d(np.arange(len(paths)), np.asarray(bad, dtype=np.int64))
    if bad:
        images = ImageView(images, kept)  # the good rows, read from the memmap when asked
    return DecodedImages(images, kept, tuple(meta["bad_files"]))


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == CACHE_FORMAT else None
