"""CLI: missing teacher weights stop a run with one line (exit 2); `bench teachers` says what is here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def bench(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Offline, an empty HF cache and an empty $BENCH_WEIGHTS (PYTHONPATH is kept)."""
    (tmp_path / "weights").mkdir(exist_ok=True)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "th"),
            "BENCH_WEIGHTS": str(tmp_path / "weights")}


def test_missing_weights_stop_the_run_before_the_database(tmp_path: Path) -> None:
    grid = tmp_path / "g.yaml"
    grid.write_text("teacher: [effnet-lite0, dino-vits16]\nstudent: projection\nmethod: kd\ndataset: digits\n"
                    "data: {train_limit: 50, val_limit: 20, test_limit: 20}\n")
    db = tmp_path / "r.db"
    result = bench("run", str(grid), "--db", f"sqlite:///{db}", "--allow-download", "--cache-dir",
                   str(tmp_path / "cache"), cwd=tmp_path, env=offline_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: no weights for teacher 'dino-vits16'")
    assert f"{tmp_path}/weights/dino-vits16/: empty or missing" in lines[0]
    assert "download: refused because HF_HUB_OFFLINE is set" in lines[0]
    assert "$BENCH_WEIGHTS/dino-vits16/model.safetensors" in lines[0]
    assert not db.exists()


def test_bench_teachers_reports_where_weights_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    env = offline_env(tmp_path)
    folder = tmp_path / "weights" / "timm--test_vit"
    folder.mkdir()
    model = timm.create_model("test_vit")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    result = bench("teachers", "--json", "effnet-lite0", "dino-vits16", "timm:test_vit", "blip-base",
                   cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["effnet-lite0"]["available"] and rows["effnet-lite0"]["weights_origin"] == "packaged"
    assert rows["effnet-lite0"]["params"] == 4_652_008 and rows["effnet-lite0"]["embed_dim"] == 1280
    vit = rows["timm:test_vit"]
    assert vit["available"] and vit["weights_origin"] == "bench-weights"
    assert vit["weights"] == str(folder / "model.safetensors")
    assert vit["params"] == sum(p.numel() for p in model.parameters()) and vit["embed_dim"] == 64
    assert vit["preprocess"]["input_size"] == 160 and "attn.5" in vit["taps"]
    dino = rows["dino-vits16"]
    assert not dino["available"] and dino["embed_dim"] == 384 and dino["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert "$BENCH_WEIGHTS/dino-vits16/model.safetensors" in dino["missing"]
    assert not rows["blip-base"]["available"] and "save_pretrained directory" in rows["blip-base"]["missing"]

    import huggingface_hub.constants
    from typer.testing import CliRunner

    from bench.cli.app import app

    monkeypatch.setenv("BENCH_WEIGHTS", env["BENCH_WEIGHTS"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    table = CliRunner().invoke(app, ["teachers", "effnet-lite0", "dino-vits16", "timm:test_vit"],
                               env={"COLUMNS": "240"})  # the table wraps to the terminal: wide enough for whole cells
    assert table.exit_code == 0, table.output
    assert "MISSING" in table.output and "hidden.0-11" in table.output and "attn.0-11" in table.output
    assert "bench-weights" in table.output and "imagenet" in table.output
    assert "dino-vits16: no weights for teacher 'dino-vits16'" in table.output


def test_inventory_reports_each_teacher_before_describing_it() -> None:
    from bench.teachers.inventory import inventory

    calls: list[tuple[int, int, str]] = []
    infos = inventory(["effnet-lite0", "dino-vits16"], None, lambda i, n, name: calls.append((i, n, name)))
    assert calls == [(0, 2, "effnet-lite0"), (1, 2, "dino-vits16")]
    assert [info.name for info in infos] == ["effnet-lite0", "dino-vits16"] and infos[0].embed_dim == 1280
