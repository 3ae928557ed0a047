"""The embedded teacher is really ImageNet-pretrained, loads safely and gives documented taps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.data.images import to_tensor
from bench.teachers.base import load_state_dict_file
from bench.teachers.effnet import packaged_weights_path, remap_in_order

skimage_data = pytest.importorskip("skimage.data")


def imagenet_top1(teacher, image: np.ndarray) -> int:
    pre = teacher.preprocess
    batch = to_tensor(image[None], pre.input_size, pre.mean, pre.std, pre.interpolation)
    with torch.inference_mode():
        return int(teacher.features(batch, ["imagenet_logits"])["imagenet_logits"].argmax())


def test_chelsea_is_a_cat_and_coffee_is_espresso(effnet) -> None:
    assert 281 <= imagenet_top1(effnet, skimage_data.chelsea()) <= 285
    assert imagenet_top1(effnet, skimage_data.coffee()) == 967


def test_preprocessing_comes_from_the_model_config(effnet) -> None:
    pre = effnet.preprocess
    assert pre.input_size == 224 and pre.interpolation == "bicubic"
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert pre.with_size(96).input_size == 96 and pre.with_size(None) is pre


def test_taps_have_documented_shapes(effnet) -> None:
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        out = effnet.features(images, ["pooled", "imagenet_logits", "feature_map"])
    assert out["pooled"].shape == (2, effnet.embed_dim) == (2, 1280)
    assert out["imagenet_logits"].shape == (2, 1000)
    assert out["feature_map"].shape == (2, 1280, 2, 2)
    with pytest.raises(BenchError, match="has no tap"):
        effnet.features(images, ["attention"])


def test_teacher_is_frozen(effnet) -> None:
    assert not any(p.requires_grad for p in effnet.parameters())
    effnet.train()
    assert not effnet.training and not effnet.encoder.training


def test_loading_from_an_explicit_safetensors_file(tmp_path: Path, effnet) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in effnet.encoder.state_dict().items()}
    path = tmp_path / "effnet.safetensors"
    save_file(state, str(path))
    reloaded = TEACHERS.get("effnet-lite0")(str(path))
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(reloaded.features(images, ["pooled"])["pooled"],
                           effnet.features(images, ["pooled"])["pooled"])
    assert reloaded.fingerprint != effnet.fingerprint  # a different file is a different cache key


class Boom:
    def __reduce__(self):  # noqa: ANN204 - executing this on load would be the bug
        return (Path.touch, (Path("/tmp/distill-bench-pwned"),))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "evil": Boom()}, path)
    with pytest.raises(BenchError, match="cannot read weights file"):
        load_state_dict_file(path)
    assert not Path("/tmp/distill-bench-pwned").exists()


def test_bad_weights_files_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="cannot read weights file .*garbage.pth"):
        TEACHERS.get("effnet-lite0")(str(garbage))
    with pytest.raises(BenchError, match="weights file not found"):
        TEACHERS.get("effnet-lite0")(str(tmp_path / "missing.pth"))
    small = tmp_path / "small.pth"
    torch.save({"a": torch.zeros(2)}, small)
    with pytest.raises(BenchError, match="hold 1 tensors but tf_efficientnet_lite0 expects 296"):
        TEACHERS.get("effnet-lite0")(str(small))


def test_remap_checks_shapes() -> None:
    with pytest.raises(BenchError, match="does not fit"):
        remap_in_order({"x": torch.zeros(3)}, ["y"], {"y": torch.Size([4])})
    assert packaged_weights_path().is_file()
