"""open_clip teachers: a tiny CLIP config saved as open_clip checkpoints, loaded back through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.teachers.clip import register_clip_teacher
from bench.teachers.zero_shot import zero_shot_head, zero_shot_logits
from tests.support.registration import registered_by
from tests.support.tiny_models import TINY_CLIP

open_clip = pytest.importorskip("open_clip")

TINY_SIGLIP = {
    "embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 64, "timm_model_name": "test_vit", "timm_model_pretrained": False,
                   "timm_pool": "avg", "timm_proj": "linear"},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2, "proj_bias": True,
                 "pool_type": "argmax"},
}


@pytest.fixture(scope="module")
def tiny_archs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Register two tiny open_clip configs (as a user adds their own) and save random-weight checkpoints."""
    folder = tmp_path_factory.mktemp("open_clip")
    saved = {}
    for arch, config in (("tiny-clip-test", TINY_CLIP), ("tiny-siglip-test", TINY_SIGLIP)):
        (folder / f"{arch}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder / f"{arch}.json")
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained_image=False, pretrained_text=False).eval()
        from safetensors.torch import save_file

        path = folder / arch / "open_clip_model.safetensors"
        path.parent.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        torch.save(model.state_dict(), folder / arch / "open_clip_pytorch_model.bin")
        saved[arch] = folder / arch
    return saved


def source_model(arch: str, folder: Path) -> torch.nn.Module:
    return open_clip.create_model(arch, pretrained=str(folder / "open_clip_model.safetensors")).eval()


def test_generic_name_loads_an_open_clip_checkpoint_with_identical_outputs(tiny_archs) -> None:
    folder = tiny_archs["tiny-clip-test"]
    source = source_model("tiny-clip-test", folder)
    teacher = TEACHERS.get("open_clip:tiny-clip-test")(str(folder / "open_clip_pytorch_model.bin"))
    assert teacher.modality == "image-text" and teacher.embed_dim == 16
    assert set(TEACHERS.entry("open_clip:tiny-clip-test").card.taps) == set(teacher.taps)
    images = torch.randn(3, 3, 32, 32)
    taps = ["pooled", "image_embed", "tokens", "hidden.0", "hidden.1", "attn.1"]
    blocks, attn_in = [], []
    hooks = [block.register_forward_hook(lambda _m, _i, out: blocks.append(out)) for block in
             source.visual.transformer.resblocks]
    hooks.append(source.visual.transformer.resblocks[1].ln_1.register_forward_hook(
        lambda _m, _i, out: attn_in.append(out)))
    with torch.inference_mode():
        out = teacher.features(images, taps)
        expected = source.encode_image(images)
        attention = source.visual.transformer.resblocks[1].attn(
            attn_in[0], attn_in[0], attn_in[0], need_weights=True, average_attn_weights=False)[1]
        texts = ["a photo of a cat.", "a photo of a dog."]
        expected_text = F.normalize(source.encode_text(open_clip.get_tokenizer("tiny-clip-test")(texts)), dim=-1)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(out["pooled"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["image_embed"], F.normalize(expected, dim=-1), rtol=1e-5, atol=1e-6)
    assert out["tokens"].shape == (3, 16, 32) and out["image_embed"].shape == (3, 16)
    for i in range(2):
        torch.testing.assert_close(out[f"hidden.{i}"], blocks[i][:, 1:], rtol=1e-5, atol=1e-5)
    assert out["attn.1"].shape == (3, 2, 17, 17)
    torch.testing.assert_close(out["attn.1"], attention, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(teacher.encode_text(texts), expected_text, rtol=1e-5, atol=1e-6)


def test_zero_shot_logits_are_scaled_cosines_to_class_prompts(tiny_archs) -> None:
    teacher = TEACHERS.get("open_clip:tiny-clip-test")(str(tiny_archs["tiny-clip-test"]))
    images = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        image_embed = teacher.features(images, ["image_embed"])["image_embed"]
    classes = ["zero", "one", "two"]
    templates = ("a photo of a {}.", "a drawing of the digit {}.")
    head = zero_shot_head(teacher, classes, templates)
    prompts = teacher.encode_text([t.format(c) for c in classes for t in templates]).reshape(3, 2, -1).mean(1)
    expected = teacher.logit_scale * image_embed @ F.normalize(prompts, dim=-1).T
    logits = zero_shot_logits(teacher, classes, image_embed, templates)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert logits.shape == (4, 3) and teacher.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    assert "zero-shot open_clip:tiny-clip-test (2 prompt templates" in head.reference


def test_timm_trunk_tower_siglip_style(tiny_archs, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_archs["tiny-siglip-test"]
    source = source_model("tiny-siglip-test", folder)
    with registered_by(TEACHERS, "tiny-siglip", register_clip_teacher, "tiny-siglip-test", None,
                       "tiny SigLIP-style tower"):
        monkeypatch.setenv("BENCH_WEIGHTS", str(folder.parent))
        (folder.parent / "tiny-siglip").symlink_to(folder)  # $BENCH_WEIGHTS/<teacher>/open_clip_model.safetensors
        teacher = TEACHERS.get("tiny-siglip")(None)
        images = torch.randn(2, 3, 64, 64)
        with torch.inference_mode():
            out = teacher.features(images, ["pooled", "image_embed", "tokens", "hidden.1", "attn.0"])
            expected = source.encode_image(images)
        torch.testing.assert_close(out["pooled"], expected, rtol=1e-5, atol=1e-6)
        assert out["tokens"].shape == out["hidden.1"].shape == (2, 16, 64)
        assert out["attn.0"].shape == (2, 2, 17, 17)  # timm test_vit trunk: class token + 16 patches
        assert out["image_embed"].shape == (2, 32) and teacher.preprocess.input_size == 64
        assert teacher.logit_bias == pytest.approx(-10.0)
        assert set(TEACHERS.entry("tiny-siglip").card.taps) == set(teacher.taps)


def test_clip_names_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("clip-vitb32", "clip-vitb16", "siglip-base"):
        assert "image_embed" in TEACHERS.entry(name).card.taps
    with pytest.raises(BenchError, match=r"clip-vitb32/open_clip_model.safetensors, or give"):
        TEACHERS.get("clip-vitb32")(None)
    with pytest.raises(BenchError, match="did you mean: ViT-B-32"):
        TEACHERS.entry("open_clip:ViT-B-32x")
    with pytest.raises(BenchError, match="no pretrained tag 'nope'.*openai"):
        TEACHERS.entry("open_clip:ViT-B-32:nope")
