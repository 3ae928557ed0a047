"""A grid naming a tiny saved DINO-architecture teacher runs end to end on digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config.grid import load_grid
from bench.core.registries import TEACHERS
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from bench.teachers.timm_vit import create_timm_model, register_timm_teacher
from tests.support.registration import registered_by
from tests.support.rows import query

TINY_DINO = {"depth": 2, "embed_dim": 48, "num_heads": 3, "img_size": 32, "patch_size": 8}
GRID = """
name: tiny-dino
teacher: tiny-dino-e2e
student: resnet
method: feature
dataset: digits
epochs: 3
data: {image_size: 32, student_image_size: 16, train_limit: 500, val_limit: 100, test_limit: 200}
hparams: {batch_size: 32, beta: 1.0}  # FitNets' 100 (the default) swamps CE in this tiny run; this tests the tap
"""


@pytest.mark.slow
def test_grid_with_a_tiny_saved_dino_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = create_timm_model("vit_small_patch16_224.dino", None, **TINY_DINO)
    folder = tmp_path / "weights" / "tiny-dino-e2e"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(folder / "model.safetensors"))
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "weights"))
    with registered_by(TEACHERS, "tiny-dino-e2e", register_timm_teacher, "vit_small_patch16_224.dino", "tiny DINO ViT",
                       **TINY_DINO):
        grid_path = tmp_path / "grid.yaml"
        grid_path.write_text(GRID)
        db = f"sqlite:///{tmp_path / 'results.db'}"
        summary = run_grid(load_grid(grid_path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert (summary.total, summary.done, summary.failed) == (2, 2, 0)
    rows = query(db, "SELECT student, method, status, test_acc, teacher, cache_hits, cache_misses "
                     "FROM runs ORDER BY id")
    assert all(row["status"] == "done" and row["teacher"] == "tiny-dino-e2e" for row in rows)
    probe, students = rows[0], rows[1:]
    assert (probe["student"], probe["method"]) == ("linear-probe", "teacher-probe")
    assert probe["test_acc"] > 0.5  # random ViT features still separate
    assert probe["cache_misses"] == 3  # features computed once
    assert all(row["cache_hits"] == 3 and row["cache_misses"] == 0 for row in students)
    assert (students[0]["student"], students[0]["method"]) == ("resnet", "feature")
    assert students[0]["test_acc"] > 0.5, rows  # 10 classes: chance is 0.1
