"""`bench teachers fetch`: offline, one error line per teacher and exit 2; online, weights land and load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bench.core.cards import TeacherCard
from bench.core.registries import TEACHERS
from bench.teachers.base import Preprocess, Teacher, load_state_dict_file
from bench.teachers.fetch import fetch_all
from bench.teachers.weights import WeightsSpec, resolve_weights
from tests.support.paths import REPO

NAME = "tiny-fetch-teacher"


class TinyTeacher(Teacher):
    def features(self, images: torch.Tensor, taps: list[str]) -> dict[str, torch.Tensor]:
        return {"pooled": self.encoder(images.mean(dim=(2, 3)))}


def build(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
    """Loads the weights as a real teacher does: resolved path, then a state dict without pickle."""
    resolved = resolve_weights(spec(), weights, allow_download)
    encoder = nn.Linear(3, 4)
    encoder.load_state_dict(load_state_dict_file(resolved.path))
    return TinyTeacher(NAME, encoder, Preprocess(8, (0.5,) * 3, (0.5,) * 3), 4, resolved.fingerprint)


DOWNLOADS: list[Path] = []


def spec() -> WeightsSpec:
    def download() -> Path:  # what hf_hub_download does: write into the cache, return the path
        path = DOWNLOADS[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(nn.Linear(3, 4).state_dict(), str(path))
        return path

    return WeightsSpec(NAME, ("model.safetensors",), "fake hub cache", lambda: None, download)


def test_fetch_downloads_verifies_and_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    DOWNLOADS[:] = [tmp_path / "hub" / "model.safetensors"]
    with TEACHERS.temporarily(NAME, build, TeacherCard("timm", ("pooled",), weights_spec=spec)):
        fetched, failed = fetch_all([NAME])
    assert failed == []
    assert (fetched[0].path, fetched[0].origin, fetched[0].params) == (str(DOWNLOADS[0]), "download", 16)


def test_fetch_refuses_offline_with_one_line_per_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    DOWNLOADS[:] = []
    with TEACHERS.temporarily(NAME, build, TeacherCard("timm", ("pooled",), weights_spec=spec)):
        fetched, failed = fetch_all([NAME])
    assert fetched == [] and len(failed) == 1
    assert failed[0].startswith(f"{NAME}: not fetched: no weights for teacher")
    assert "download: refused because HF_HUB_OFFLINE is set" in failed[0]


def test_cli_fetch_all_paper_offline_exits_2_naming_each_teacher(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_WEIGHTS", "HF_HOME")}
    env.update(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "bench", "teachers", "fetch", "--all-paper"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(":")[1].strip() for line in lines] == [
        "dino-vitb16", "beit-base", "clip-vitb16", "blip-base", "dino-vits16"]
    assert "Traceback" not in result.stderr
