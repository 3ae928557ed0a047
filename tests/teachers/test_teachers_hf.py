"""BLIP and `hf:<repo>` teachers: tiny transformers models saved with save_pretrained, loaded back offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.registries import TEACHERS

transformers = pytest.importorskip("transformers")

WORDS = ["a", "photo", "of", "the", "digit", "zero", "one", "two", "cat", "dog"]


def save_tokenizer(folder: Path) -> None:
    """A tiny BERT word-piece tokenizer (BLIP's tokenizer family) saved beside the model."""
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    transformers.BertTokenizer(str(vocab)).save_pretrained(folder)
    vocab.unlink()
    transformers.BertTokenizer.from_pretrained(folder).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("blip")
    config = transformers.BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "encoder_hidden_size": 32, "bos_token_id": 2, "sep_token_id": 3},
        image_text_hidden_size=16,
    )
    torch.manual_seed(0)
    model = transformers.BlipForImageTextRetrieval(config).eval()
    with torch.no_grad():  # BLIP's init is ~1e-10 in the vision tower: perturb so every layer matters
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    save_tokenizer(folder)
    transformers.BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, model


def test_blip_loads_from_a_save_pretrained_dir_with_identical_scores(tiny_blip) -> None:
    folder, source = tiny_blip
    teacher = TEACHERS.get("blip-base")(str(folder))
    assert teacher.modality == "image-text" and teacher.embed_dim == 16
    assert teacher.preprocess.input_size == 32 and teacher.preprocess.mean == pytest.approx((0.48145466, 0.4578275,
                                                                                            0.40821073))
    images, texts = torch.randn(3, 3, 32, 32), ["a photo of the digit one", "a cat", "a dog"]
    tokens = teacher.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = teacher.features(images, ["pooled", "image_embed", "tokens", "hidden.0", "hidden.1", "attn.1"])
        itc = source(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=images,
                     use_itm_head=False).itm_score
        itm = source(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=images,
                     use_itm_head=True).itm_score.softmax(-1)[:, 1]
        vision = source.vision_model(pixel_values=images, output_hidden_states=True)
    torch.testing.assert_close(teacher.itc_scores(images, texts), itc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(teacher.itm_scores(images, texts), itm, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["image_embed"] @ teacher.encode_text(texts).T, itc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["image_embed"], F.normalize(out["pooled"], dim=-1))
    assert out["pooled"].shape == (3, 16) and out["tokens"].shape == (3, 16, 32)
    torch.testing.assert_close(out["hidden.1"], vision.hidden_states[-1][:, 1:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out["hidden.0"], out["hidden.1"])
    assert out["attn.1"].shape == (3, 2, 17, 17)
    torch.testing.assert_close(out["attn.1"].sum(-1), torch.ones(3, 2, 17))


def test_blip_zero_shot_uses_its_itc_temperature(tiny_blip) -> None:
    from bench.teachers.zero_shot import zero_shot_logits

    teacher = TEACHERS.get("blip-base")(str(tiny_blip[0]))
    with torch.inference_mode():
        embed = teacher.features(torch.randn(2, 3, 32, 32), ["image_embed"])["image_embed"]
    logits = zero_shot_logits(teacher, ["zero", "one"], embed, ("a photo of the digit {}",))
    expected = embed @ teacher.encode_text(["a photo of the digit zero", "a photo of the digit one"]).T / 0.07
    torch.testing.assert_close(logits, expected, rtol=1e-3, atol=1e-3)


def test_generic_hf_vision_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = transformers.ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    image_size=32, patch_size=8)
    torch.manual_seed(0)
    source = transformers.ViTModel(config).eval()
    folder = tmp_path / "hf--tiny-org--tiny-vit"
    source.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    teacher = TEACHERS.get("hf:tiny-org/tiny-vit")(None)
    assert teacher.preprocess.mean == (0.5, 0.5, 0.5) and teacher.preprocess.input_size == 32
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        out = teacher.features(images, ["pooled", "tokens", "hidden.0", "attn.1"])
        expected = source(pixel_values=images, output_hidden_states=True)
    torch.testing.assert_close(out["pooled"], expected.pooler_output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["tokens"], expected.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["hidden.0"], expected.hidden_states[1][:, 1:], rtol=1e-5, atol=1e-6)
    assert out["attn.1"].shape == (2, 2, 17, 17)
    from bench.teachers.inventory import describe_teacher

    info = describe_teacher(TEACHERS.entry("hf:tiny-org/tiny-vit"))
    assert info.weights_origin == "bench-weights" and info.params == sum(p.numel() for p in source.parameters())


def test_missing_blip_weights_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BenchError, match=r"HF cache \(Salesforce/blip-itm-base-coco\): not cached.*"
                                         r"save_pretrained directory .* as \$BENCH_WEIGHTS/blip-base/"):
        TEACHERS.get("blip-base")(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="holds no config.json"):
        TEACHERS.get("blip-base")(str(tmp_path / "empty"))
    with pytest.raises(BenchError, match="expected hf:<org>/<repo>"):
        TEACHERS.entry("hf:just-a-name")


def test_bench_teachers_describes_a_local_blip_dir(tiny_blip) -> None:
    from bench.teachers.inventory import describe_teacher

    folder, source = tiny_blip
    info = describe_teacher(TEACHERS.entry("blip-base"), str(folder))
    assert (info.weights_origin, info.weights, info.missing) == ("explicit", str(folder), None)
    assert info.params == sum(p.numel() for p in source.parameters()) and info.embed_dim == 16
    assert info.preprocess.input_size == 32 and "image_embed" in info.taps
