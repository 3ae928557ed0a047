"""Weights resolution: explicit path, then $BENCH_WEIGHTS/<teacher>/, then the library cache, then a download."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.teachers.weights import WeightsSpec, hf_cached_file, resolve_weights, weights_dir_name


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def fake_hf_cache(root: Path, repo_id: str, filename: str, content: bytes) -> Path:
    """The hub cache layout: refs/main names the snapshot that holds the file."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    write(repo / "refs" / "main", b"abc123")
    return write(repo / "snapshots" / "abc123" / filename, content)


def test_each_place_is_tried_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[str] = []
    cached = write(tmp_path / "cache" / "model.safetensors", b"cache")
    spec = WeightsSpec("dino-vits16", ("model.safetensors",), "fake cache", lambda: cached,
                       lambda: downloads.append("x") or cached)
    explicit = write(tmp_path / "mine.pth", b"explicit")
    bench_file = write(tmp_path / "bw" / "dino-vits16" / "model.safetensors", b"bench")
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "bw"))
    first = resolve_weights(spec, str(explicit))
    assert (first.path, first.origin) == (explicit, "explicit")
    assert resolve_weights(spec, str(bench_file.parent)).path == bench_file  # a directory holding the file
    second = resolve_weights(spec, None)
    assert (second.path, second.origin) == (bench_file, "bench-weights")
    bench_file.unlink()
    third = resolve_weights(spec, None, allow_download=True)
    assert (third.path, third.origin) == (cached, "cache") and downloads == []
    assert len({first.fingerprint, second.fingerprint, third.fingerprint}) == 3  # content decides the cache key


def test_download_only_when_allowed_and_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloaded = write(tmp_path / "dl" / "model.safetensors", b"downloaded")
    calls: list[int] = []
    spec = WeightsSpec("t", ("model.safetensors",), "fake cache", lambda: None, lambda: calls.append(1) or downloaded)
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    with pytest.raises(BenchError, match="or rerun with --allow-download"):
        resolve_weights(spec, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match="download: refused because HF_HUB_OFFLINE is set"):
        resolve_weights(spec, None, allow_download=True)
    assert calls == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    resolved = resolve_weights(spec, None, allow_download=True)
    assert (resolved.origin, calls) == ("download", [1])


def test_hf_cache_lookup_reads_the_hub_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert hf_cached_file("timm/vit_small_patch16_224.dino", ("model.safetensors",)) is None
    path = fake_hf_cache(tmp_path, "timm/vit_small_patch16_224.dino", "pytorch_model.bin", b"w")
    assert hf_cached_file("timm/vit_small_patch16_224.dino", ("model.safetensors", "pytorch_model.bin")) == path


def test_directory_names_and_bad_directories(tmp_path: Path) -> None:
    assert weights_dir_name("hf:Salesforce/blip-itm-base-coco") == "hf--Salesforce--blip-itm-base-coco"
    assert weights_dir_name("open_clip:ViT-B-32:openai") == "open_clip--ViT-B-32--openai"
    spec = WeightsSpec("t", ("model.safetensors",), "c", lambda: None)
    write(tmp_path / "two" / "a.pth", b"1")
    write(tmp_path / "two" / "b.pth", b"2")
    with pytest.raises(BenchError, match="holds none of model.safetensors and no single weights file"):
        resolve_weights(spec, str(tmp_path / "two"))
