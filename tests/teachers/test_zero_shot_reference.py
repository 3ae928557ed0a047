"""`data.teacher_reference: zero-shot`: an image-text teacher's prompts give the reference and the KD targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.config.grid import load_grid
from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.data.images import to_tensor
from bench.data.splits import DataConfig, load_dataset
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from tests.support.rows import query
from tests.support.tiny_models import TINY_CLIP

open_clip = pytest.importorskip("open_clip")
TEACHER = "open_clip:tiny-clip-zs"
DATA = {"image_size": 32, "train_limit": 300, "val_limit": 100, "test_limit": 200, "teacher_reference": "zero-shot"}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random open_clip model saved as its release format (safetensors)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("zs")
    (folder / "tiny-clip-zs.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "tiny-clip-zs.json")
    torch.manual_seed(3)
    model = open_clip.create_model("tiny-clip-zs", pretrained_image=False, pretrained_text=False).eval()
    path = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def independent_zero_shot_accuracy(weights: Path) -> float:
    """Zero-shot test accuracy computed here from the teacher's encoders, not through the workbench."""
    teacher = TEACHERS.get(TEACHER)(str(weights))
    data = load_dataset("digits", DataConfig(**DATA))
    pre = teacher.preprocess.with_size(32)
    images = to_tensor(data.test.images, pre.input_size, pre.mean, pre.std, pre.interpolation)
    with torch.inference_mode():
        image_embed = F.normalize(teacher.features(images, ["image_embed"])["image_embed"], dim=-1)
        text = F.normalize(teacher.encode_text([f"a photo of a {name}." for name in data.class_names]), dim=-1)
    predictions = (image_embed @ text.T).argmax(dim=-1)
    return float((predictions == torch.from_numpy(data.test.labels)).float().mean())


def test_zero_shot_needs_an_image_text_teacher(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("teacher: effnet-lite0\nstudent: projection\nmethod: kd\ndataset: digits\n"
                    "data: {teacher_reference: zero-shot}\n")
    with pytest.raises(BenchError, match="'zero-shot' needs an image-text teacher .*'effnet-lite0' has no text"):
        load_grid(path)
    path.write_text("teacher: effnet-lite0\nstudent: projection\nmethod: kd\ndataset: digits\n"
                    "data: {teacher_reference: zeroshot}\n")
    with pytest.raises(BenchError, match="field 'data.teacher_reference'"):
        load_grid(path)


@pytest.mark.slow
def test_grid_with_zero_shot_reference_and_kd_targets(tmp_path: Path, tiny_clip: Path) -> None:
    grid_path = tmp_path / "zs.yaml"
    grid_path.write_text(json.dumps({
        "name": "zs", "teacher": TEACHER, "student": ["projection"], "method": ["scratch", "kd"],
        "dataset": "digits", "epochs": 2, "data": DATA, "weights": {TEACHER: str(tiny_clip)},
    }))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    summary = run_grid(load_grid(grid_path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert (summary.done, summary.failed) == (3, 0)
    reference_row, *students = query(db, "SELECT student, method, teacher_reference, teacher_acc, test_acc, "
                                         "pct_of_teacher, hparams FROM runs ORDER BY id")
    assert (reference_row["student"], reference_row["method"]) == ("zero-shot", "teacher-probe")
    reference = reference_row["teacher_reference"]
    assert reference.startswith("zero-shot open_clip:tiny-clip-zs (1 prompt template")
    assert reference_row["teacher_acc"] == pytest.approx(independent_zero_shot_accuracy(tiny_clip), abs=1 / 200)
    assert json.loads(reference_row["hparams"]) == {}  # no probe was fitted: no weight decay to report
    targets = query(db, "SELECT method, kd_targets FROM runs ORDER BY id")
    assert [(row["method"], row["kd_targets"]) for row in targets] == [
        ("teacher-probe", "zero-shot"), ("scratch", None), ("kd", "zero-shot")]
    for row in students:
        teacher_acc = row["teacher_acc"]
        assert row["teacher_reference"] == reference and teacher_acc == pytest.approx(reference_row["teacher_acc"])
        if teacher_acc:
            assert row["pct_of_teacher"] == pytest.approx(100 * row["test_acc"] / teacher_acc)
    from bench.report.build import build_report

    data = build_report(db, tmp_path / "out")
    assert "zero-shot" in data.matrices[0].reference_kinds[TEACHER]
