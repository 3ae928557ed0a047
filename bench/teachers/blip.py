"""Hugging Face teachers: BLIP (BlipForImageTextRetrieval) and any vision encoder as `hf:<repo_id>`."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.names import IMAGE, IMAGE_TEXT
from bench.core.registries import TEACHERS
from bench.core.registry import Entry
from bench.core.taps import IMAGE_EMBED, POOLED
from bench.teachers.base import Preprocess, Teacher
from bench.teachers.timm_vit import tap_indices, vit_taps
from bench.teachers.weights import WeightsSpec, hf_cached_snapshot, hf_download_snapshot, resolve_weights

BLIP_REPO = "Salesforce/blip-itm-base-coco"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def hf_weights_spec(teacher: str, repo_id: str) -> WeightsSpec:
    """A transformers save_pretrained directory: explicit, $BENCH_WEIGHTS, HF cache snapshot, or download."""
    return WeightsSpec(teacher, ("config.json",), f"HF cache ({repo_id})", lambda: hf_cached_snapshot(repo_id),
                       hf_download_snapshot(repo_id), directory=True)


def hf_preprocess(directory: Path, default_size: int) -> Preprocess:
    """Preprocessing from the directory's preprocessor_config.json (the image processor's own settings)."""
    path = directory / "preprocessor_config.json"
    cfg: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    size = cfg.get("crop_size") or cfg.get("size") or default_size
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or default_size
    return Preprocess(int(size), tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD)),
                      _RESAMPLE.get(cfg.get("resample", 3), "bicubic"))


def hidden_tap(hidden_states: Sequence[torch.Tensor], depth: int, index: int, prefix: int) -> torch.Tensor:
    """Output of block `index` (patch tokens) whether or not hidden_states starts with the embeddings."""
    offset = len(hidden_states) - depth
    return hidden_states[index + offset][:, prefix:]


def load_hf(teacher: str, loader: Callable[[Path], Any], path: Path) -> Any:
    """Run a transformers from_pretrained on a local directory, failures as one BenchError line."""
    try:
        return loader(path)
    except Exception as error:  # noqa: BLE001 - a directory that does not fit is the user's to fix
        raise BenchError(
            f"cannot load {path} for teacher {teacher!r} with transformers: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from None


class BlipTeacher(Teacher):
    """BLIP ITM/ITC: projected image/text embeddings, vision taps, and image-text matching scores."""

    family = "transformers"
    modality = "image-text"
    channels_last = False

    def __init__(self, name: str, model: nn.Module, tokenizer: Any, preprocess: Preprocess, fingerprint: str) -> None:
        super().__init__(name, model, preprocess, int(model.config.image_text_hidden_size), fingerprint)
        self.tokenizer = tokenizer
        self.depth = int(model.config.vision_config.num_hidden_layers)
        self.taps = (*vit_taps(self.depth), IMAGE_EMBED)
        self.logit_scale = math.exp(float(model.config.logit_scale_init_value))  # BLIP's ITC temperature 1/0.07
        self.logit_bias = 0.0

    def _vision(self, images: torch.Tensor, taps: Sequence[str]) -> Any:
        size = int(self.encoder.config.vision_config.image_size)
        return self.encoder.vision_model(
            pixel_values=images, interpolate_pos_encoding=images.shape[-1] != size,
            output_hidden_states=bool(tap_indices(taps, "hidden")), output_attentions=bool(tap_indices(taps, "attn")),
        )

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        vision = self._vision(images, taps)
        pooled = self.encoder.vision_proj(vision.last_hidden_state[:, 0])
        outputs = {POOLED: pooled, IMAGE_EMBED: F.normalize(pooled.float(), dim=-1),
                   "tokens": vision.last_hidden_state[:, 1:]}
        for i in tap_indices(taps, "hidden"):
            outputs[f"hidden.{i}"] = hidden_tap(vision.hidden_states, self.depth, i, 1)
        for i in tap_indices(taps, "attn"):
            outputs[f"attn.{i}"] = vision.attentions[i]
        return {tap: outputs[tap].float() for tap in taps}

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        device = next(self.encoder.parameters()).device
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=35, return_tensors="pt")
        return {key: value.to(device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised ITC text embeddings (same space as `image_embed`)."""
        hidden = self.encoder.text_encoder(**self.tokenize(texts)).last_hidden_state
        return F.normalize(self.encoder.text_proj(hidden[:, 0]).float(), dim=-1)

    @torch.inference_mode()
    def itc_scores(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(N images, M texts) cosine similarities of the contrastive heads."""
        return self.features(images, [IMAGE_EMBED])[IMAGE_EMBED] @ self.encode_text(texts).T

    @torch.inference_mode()
    def itm_scores(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(N,) probability that image i matches text i, from BLIP's cross-attention ITM head."""
        output = self.encoder(pixel_values=images, use_itm_head=True, **self.tokenize(texts))
        return output.itm_score.float().softmax(dim=-1)[:, 1]


def blip_factory(teacher: str, repo_id: str) -> Callable[..., Teacher]:
    """A teacher factory for a BlipForImageTextRetrieval directory (save_pretrained layout)."""

    def build(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
        from transformers import AutoTokenizer, BlipForImageTextRetrieval

        resolved = resolve_weights(hf_weights_spec(teacher, repo_id), weights, allow_download)
        model = load_hf(teacher, lambda p: BlipForImageTextRetrieval.from_pretrained(
            p, local_files_only=True, attn_implementation="eager").eval(), resolved.path)
        tokenizer = load_hf(teacher, lambda p: AutoTokenizer.from_pretrained(p, local_files_only=True), resolved.path)
        preprocess = hf_preprocess(resolved.path, int(model.config.vision_config.image_size))
        return BlipTeacher(teacher, model, tokenizer, preprocess, resolved.fingerprint)

    build.__doc__ = f"transformers BlipForImageTextRetrieval {repo_id}"
    return build


class HfVisionTeacher(Teacher):
    """Any transformers vision encoder (ViT, DINOv2, BEiT, ConvNeXt, ...) through AutoModel."""

    family = "transformers"
    modality = "image"

    def __init__(self, name: str, model: nn.Module, preprocess: Preprocess, fingerprint: str) -> None:
        config = model.config
        super().__init__(name, model, preprocess, int(getattr(config, "hidden_size", 0) or config.hidden_sizes[-1]),
                         fingerprint)
        self.patch_size = getattr(config, "patch_size", None)
        self.depth = int(getattr(config, "num_hidden_layers", 0) or len(getattr(config, "depths", [])))
        self.channels_last = self.patch_size is None
        self.taps = vit_taps(self.depth) if self.patch_size else (POOLED, "feature_map")

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        output = self.encoder(pixel_values=images, output_hidden_states=bool(tap_indices(taps, "hidden")),
                              output_attentions=bool(tap_indices(taps, "attn")))
        last = output.last_hidden_state
        if last.dim() == 4:  # conv encoders: (N, C, H, W)
            pooled = output.pooler_output.flatten(1) if output.pooler_output is not None else last.mean((2, 3))
            return {tap: {POOLED: pooled, "feature_map": last}[tap].float() for tap in taps}
        patches = (images.shape[-2] // self.patch_size) * (images.shape[-1] // self.patch_size)
        prefix = last.shape[1] - patches
        pooler = getattr(output, "pooler_output", None)
        outputs = {POOLED: pooler if pooler is not None else last[:, 0], "tokens": last[:, prefix:]}
        for i in tap_indices(taps, "hidden"):
            outputs[f"hidden.{i}"] = hidden_tap(output.hidden_states, self.depth, i, prefix)
        for i in tap_indices(taps, "attn"):
            outputs[f"attn.{i}"] = output.attentions[i]
        return {tap: outputs[tap].float() for tap in taps}


def hf_vision_factory(teacher: str, repo_id: str) -> Callable[..., Teacher]:
    """A teacher factory for a plain vision encoder saved with save_pretrained (or in the HF cache)."""

    def build(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
        from transformers import AutoModel

        resolved = resolve_weights(hf_weights_spec(teacher, repo_id), weights, allow_download)
        model = load_hf(teacher, lambda p: AutoModel.from_pretrained(
            p, local_files_only=True, attn_implementation="eager").eval(), resolved.path)
        size = getattr(model.config, "image_size", 224)
        return HfVisionTeacher(teacher, model, hf_preprocess(resolved.path, int(size)), resolved.fingerprint)

    build.__doc__ = f"transformers AutoModel {repo_id}"
    return build


def hf_describer(blip: bool) -> Callable[[Path | None], dict[str, Any]]:
    """Params, embedding dim and preprocessing from a local config.json (unknown until the weights are here)."""

    def describe(weights: Path | None) -> dict[str, Any]:
        if weights is None:
            return {}
        from transformers import AutoConfig, AutoModel, BlipForImageTextRetrieval

        from bench.teachers.inventory import meta_param_count

        config = AutoConfig.from_pretrained(weights, local_files_only=True)
        with torch.device("meta"):
            model = BlipForImageTextRetrieval(config) if blip else AutoModel.from_config(config)
        vision = config.vision_config if blip else config
        dim = config.image_text_hidden_size if blip else getattr(config, "hidden_size", None)
        return {"params": meta_param_count(model), "embed_dim": dim,
                "preprocess": hf_preprocess(weights, int(getattr(vision, "image_size", 224)))}

    return describe


def hf_card(teacher: str, repo_id: str, taps: tuple[str, ...], blip: bool) -> TeacherCard:
    """The card of a transformers teacher: taps, repo, and how `bench teachers` checks and describes it."""
    return TeacherCard("transformers", taps, IMAGE_TEXT if blip else IMAGE, model=repo_id,
                       weights_spec=lambda: hf_weights_spec(teacher, repo_id), describe=hf_describer(blip))


@functools.lru_cache(maxsize=64)  # grids resolve each name once per student x method pair
def resolve_hf_name(name: str) -> Entry:
    """`hf:<org>/<repo>` -> a vision-encoder teacher (only `pooled` is certain before its config is read)."""
    repo_id = name.split(":", 1)[1]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise BenchError(f"teacher {name!r}: expected hf:<org>/<repo>, e.g. hf:facebook/dinov2-small")
    return TEACHERS.make_entry(name, hf_vision_factory(name, repo_id), hf_card(name, repo_id, (POOLED,), blip=False),
                               f"transformers AutoModel {repo_id}")


TEACHERS.add("blip-base", blip_factory("blip-base", BLIP_REPO),
             hf_card("blip-base", BLIP_REPO, (*vit_taps(12), IMAGE_EMBED), blip=True),
             description="BLIP ViT-B/16 ITM+ITC, COCO retrieval (Salesforce/blip-itm-base-coco)")
TEACHERS.add_prefix_resolver("hf", resolve_hf_name)
