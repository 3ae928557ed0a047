"""bench/artifacts/export.py: each format's file re-loads and matches PyTorch on real test images (ONNX: onnxruntime)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.artifacts import export
from bench.artifacts.export import export_model
from bench.core.errors import BenchError
from bench.deploy.model import images_to_input
from bench.run.cost import deployable_for_run
from tests.support.trained_runs import trained_run

STUDENTS = {"resnet": {"depth": 8, "width": 4}, "projection": {}}


@pytest.fixture(scope="module", params=sorted(STUDENTS))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A standalone and a head student (with the real EfficientNet-Lite0 backbone), trained on digits."""
    torch.set_num_threads(1)
    run = trained_run(tmp_path_factory.mktemp(request.param), request.param, hparams=STUDENTS[request.param])
    return run, deployable_for_run(run.parts, run.teacher, run.data), images_to_input(run.data.test.images)


def test_onnx_runs_in_onnxruntime_on_real_images_and_matches_pytorch(trained, tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    run, model, images = trained
    out = tmp_path / "model.onnx"
    export_model(model, "onnx", out, images[:16], metadata={"spec": "{}"})
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # self-contained: no external weights file
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})[0]  # another batch size than the export's example
    with torch.inference_mode():
        expected = model(images).numpy()
    assert got.shape == expected.shape == (len(images), run.data.num_classes)
    assert float(np.abs(got - expected).max()) < 1e-4
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["spec"] == "{}" and json.loads(props["input_shape"]) == [-1, 3, 8, 8]


def test_torchscript_reloads_and_matches_pytorch(trained, tmp_path: Path) -> None:
    _, model, images = trained
    out = tmp_path / "model.pt"
    export_model(model, "torchscript", out, images[:8])
    extra = {"metadata.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    with torch.inference_mode():
        assert float((loaded(images) - model(images)).abs().max()) < 1e-4
    assert json.loads(extra["metadata.json"])["output"] == "class logits"


def test_safetensors_holds_the_whole_state_and_the_preprocessing(trained, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    run, model, images = trained
    out = tmp_path / "model.safetensors"
    export_model(model, "safetensors", out, images[:8])
    rebuilt = deployable_for_run(run.parts, run.teacher, run.data)
    state = load_file(str(out))
    assert set(state) == set(model.state_dict())
    rebuilt.load_state_dict(state, strict=True)
    with torch.inference_mode():
        assert torch.equal(rebuilt(images), model(images))
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["mean"]) == pytest.approx(list(model.normalise.mean.flatten().tolist()))
    assert meta["teacher_tap"] == (run.parts.input_tap or "")


def test_an_export_that_does_not_match_pytorch_is_deleted_and_said(trained, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, model, images = trained
    monkeypatch.setattr(export, "EXPORT_TOLERANCE", -1.0)  # no file can match: the check must refuse it
    out = tmp_path / "model.pt"
    with pytest.raises(BenchError, match="differs from PyTorch"):
        export_model(model, "torchscript", out, images[:4])
    assert not out.exists()


def test_an_unknown_format_is_a_user_error(trained, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="safetensors, torchscript, onnx"):
        export_model(trained[1], "tflite", tmp_path / "m", trained[2][:2])  # type: ignore[arg-type]
