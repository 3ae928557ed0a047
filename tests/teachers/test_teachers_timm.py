"""DINO / DINOv2 / BEiT teachers: tiny same-architecture models saved like the releases, loaded back for real."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.teachers.timm_vit import create_timm_model, register_timm_teacher, vit_taps
from tests.support.registration import registered_by

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2, "img_size": 32, "patch_size": 8}
ARCHITECTURES = {
    "tiny-dino": "vit_small_patch16_224.dino",
    "tiny-dinov2": "vit_small_patch14_dinov2.lvd142m",
    "tiny-beit": "beit_base_patch16_224.in22k_ft_in22k_in1k",
}


@pytest.fixture(scope="module")
def tiny_entries() -> Iterator[dict[str, str]]:
    """Temporary registry entries built by the same function the real DINO/BEiT entries use."""
    with ExitStack() as stack:
        for name, model in ARCHITECTURES.items():  # taps found on the meta device
            stack.enter_context(registered_by(TEACHERS, name, register_timm_teacher, model, f"tiny {model}", **TINY))
        yield ARCHITECTURES


def save_source(model_name: str, path: Path) -> torch.nn.Module:
    """A random tiny model saved as a release would be (safetensors, or a torch state dict)."""
    torch.manual_seed(0)
    source = create_timm_model(model_name, None, **TINY).eval()
    state = {key: value.contiguous() for key, value in source.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return source


def block_io(source: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list, list]:
    """The source's final features, every block's output and every attention module's input."""
    outputs, attn_inputs = [], []
    handles = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in source.blocks]
    handles += [block.attn.register_forward_hook(lambda _m, inp, _o: attn_inputs.append(inp[0]))
                for block in source.blocks]
    with torch.inference_mode():
        final = source.forward_features(images)
    for handle in handles:
        handle.remove()
    return final, outputs, attn_inputs


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_tiny_release_loads_back_with_identical_taps(tiny_entries, tmp_path: Path, name: str, suffix: str) -> None:
    source = save_source(tiny_entries[name], tmp_path / f"weights{suffix}")
    teacher = TEACHERS.get(name)(str(tmp_path / f"weights{suffix}"))
    assert set(teacher.taps) == set(TEACHERS.entry(name).card.taps)  # what the grid checks is what it gives
    images = torch.randn(3, 3, 32, 32)
    taps = ["pooled", "tokens", "hidden.0", "hidden.1", "attn.0", "attn.1"]
    with torch.inference_mode():
        out = teacher.features(images, taps)
    final, blocks, _ = block_io(source, images)
    prefix = source.num_prefix_tokens
    torch.testing.assert_close(out["pooled"], source.forward_head(final, pre_logits=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(out["tokens"], final[:, prefix:], rtol=0, atol=1e-6)
    assert out["pooled"].shape == (3, 32) and out["tokens"].shape == (3, 16, 32)
    for i in range(2):
        assert out[f"hidden.{i}"].shape == (3, 16, 32)
        torch.testing.assert_close(out[f"hidden.{i}"], blocks[i][:, prefix:], rtol=0, atol=1e-5)
        attention = out[f"attn.{i}"]
        assert attention.shape == (3, 2, 16 + prefix, 16 + prefix)
        torch.testing.assert_close(attention.sum(-1), torch.ones(3, 2, 16 + prefix))
    assert not torch.allclose(out["hidden.0"], out["hidden.1"])
    assert all(block.attn.fused_attn == source.blocks[0].attn.fused_attn for block in teacher.encoder.blocks)


def test_attention_tap_is_softmax_of_queries_and_keys(tiny_entries, tmp_path: Path) -> None:
    source = save_source(tiny_entries["tiny-dino"], tmp_path / "dino.safetensors")
    teacher = TEACHERS.get("tiny-dino")(str(tmp_path / "dino.safetensors"))
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        attention = teacher.features(images, ["attn.1"])["attn.1"]
        _, _, attn_inputs = block_io(source, images)
        module = source.blocks[1].attn
        qkv = module.qkv(attn_inputs[1]).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        expected = (qkv[0] @ qkv[1].transpose(-2, -1) * 16**-0.5).softmax(-1)
    torch.testing.assert_close(attention, expected, rtol=1e-5, atol=1e-6)


def test_named_entries_declare_their_taps() -> None:
    for name in ("dino-vits16", "dino-vitb16", "dinov2-vits14", "dinov2-vitb14", "beit-base"):
        taps = TEACHERS.entry(name).card.taps
        assert set(vit_taps(12)) <= set(taps) and "hidden.12" not in taps
    assert "imagenet_logits" in TEACHERS.entry("beit-base").card.taps
    assert "imagenet_logits" not in TEACHERS.entry("dino-vits16").card.taps


def test_fixed_size_beit_names_the_fix(tiny_entries, tmp_path: Path) -> None:
    save_source(tiny_entries["tiny-beit"], tmp_path / "beit.safetensors")
    teacher = TEACHERS.get("tiny-beit")(str(tmp_path / "beit.safetensors"))
    with pytest.raises(BenchError, match="takes only 32 px images .*data.image_size: 32"):
        teacher.features(torch.randn(1, 3, 48, 48), ["pooled"])


def test_generic_timm_name_loads_from_bench_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_vit", dynamic_img_size=True).eval()
    folder = tmp_path / "timm--test_vit"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(folder / "model.safetensors"))
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    teacher = TEACHERS.get("timm:test_vit")(None)
    assert TEACHERS.entry("timm:test_vit").card.taps == teacher.taps and "imagenet_logits" in teacher.taps
    images = torch.randn(2, 3, 48, 48)  # ViTs take any multiple of the patch size (native 160)
    with torch.inference_mode():
        out = teacher.features(images, ["pooled", "imagenet_logits"])
        expected = source.forward_head(source.forward_features(images))
    torch.testing.assert_close(out["imagenet_logits"], expected, rtol=1e-5, atol=1e-5)
    assert out["pooled"].shape == (2, teacher.embed_dim)


def test_missing_weights_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BenchError) as caught:
        TEACHERS.get("dino-vits16")(None, allow_download=True)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{tmp_path}/dino-vits16/: empty or missing" in message
    assert "HF cache (timm/vit_small_patch16_224.dino): not cached" in message
    assert "download: refused because HF_HUB_OFFLINE is set" in message
    assert "$BENCH_WEIGHTS/dino-vits16/model.safetensors" in message
    with pytest.raises(BenchError, match="not found: .*nope.pth does not exist"):
        TEACHERS.get("dino-vits16")(str(tmp_path / "nope.pth"))


def test_unknown_timm_model_suggests_names() -> None:
    with pytest.raises(BenchError, match="did you mean: timm:vit_small_patch16_224"):
        TEACHERS.entry("timm:vit_smal_patch16_224")


def test_a_checkpoint_that_does_not_fit_or_runs_code_is_refused(tiny_entries, tmp_path: Path) -> None:
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(BenchError, match="cannot load weights .*wrong.pth into timm"):
        TEACHERS.get("tiny-dino")(str(tmp_path / "wrong.pth"))

    class Boom:
        def __reduce__(self):  # noqa: ANN204
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"pos_embed": torch.zeros(1), "evil": Boom()}, tmp_path / "evil.pth")
    with pytest.raises(BenchError, match="cannot load weights"):
        TEACHERS.get("tiny-dino")(str(tmp_path / "evil.pth"))
    assert not (tmp_path / "pwned").exists()
