"""open_clip teachers: CLIP ViT-B/32, ViT-B/16, SigLIP and any `open_clip:<arch>[:<tag>]`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cards import TeacherCard
from bench.core.errors import BenchError, UnknownNameError
from bench.core.names import IMAGE_TEXT
from bench.core.registries import TEACHERS
from bench.core.registry import Entry, nearest_names
from bench.core.taps import IMAGE_EMBED, POOLED
from bench.teachers.base import Preprocess, Teacher
from bench.teachers.timm_vit import attention_modules, meta_taps, tap_indices, timm_taps, token_features, vit_taps
from bench.teachers.weights import WeightsSpec, hf_cached_file, hf_download_file, resolve_weights

OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@contextmanager
def capture_mha_attention(blocks: Sequence[nn.Module], indices: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Per-head attention probabilities of chosen open_clip blocks (nn.MultiheadAttention asked for weights)."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for index in indices:
        attn = blocks[index].attn
        handles.append(attn.register_forward_pre_hook(
            lambda _m, args, kwargs: (args, {**kwargs, "need_weights": True, "average_attn_weights": False}),
            with_kwargs=True,
        ))
        handles.append(attn.register_forward_hook(
            lambda _m, _i, output, index=index: captured.__setitem__(index, output[1])
        ))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def vit_tower_features(visual: nn.Module, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
    """pooled (projected), tokens, hidden.<i> and attn.<i> of open_clip's own VisionTransformer."""
    hidden_ids, attn_ids = tap_indices(taps, "hidden"), tap_indices(taps, "attn")
    with capture_mha_attention(visual.transformer.resblocks, attn_ids) as attention:
        x = visual._embeds(images)
        if hidden_ids:
            x, intermediates = visual.transformer.forward_intermediates(x, indices=hidden_ids)
        else:
            x, intermediates = visual.transformer(x), []
    pooled, tokens = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    outputs = {POOLED: pooled, "tokens": tokens}
    outputs.update({f"hidden.{i}": tensor[:, 1:] for i, tensor in zip(hidden_ids, intermediates, strict=True)})
    outputs.update({f"attn.{i}": attention[i] for i in attn_ids})
    return outputs


def timm_tower_features(visual: nn.Module, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
    """Taps of an open_clip tower built on a timm trunk (SigLIP): trunk taps, projected pooled output."""
    trunk_taps = [tap for tap in taps if tap != IMAGE_EMBED]
    outputs = token_features(visual.trunk, images, trunk_taps, attention_modules(visual.trunk))
    outputs[POOLED] = visual.head(outputs[POOLED])  # the trunk has no classifier: its pooled output is its head's
    return outputs


class OpenClipTeacher(Teacher):
    """A frozen open_clip model: image taps, the joint-space `image_embed`, and `encode_text`."""

    family = "open_clip"
    modality = "image-text"
    channels_last = False

    def __init__(self, name: str, model: nn.Module, arch: str, preprocess: Preprocess, fingerprint: str) -> None:
        import open_clip

        embed_dim = int((open_clip.get_model_config(arch) or {}).get("embed_dim", 0))
        super().__init__(name, model, preprocess, embed_dim or int(model.visual.output_dim), fingerprint)
        self.arch = arch
        self.taps = (*open_clip_taps(model.visual), IMAGE_EMBED)
        self._tokenizer: Callable | None = None

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature: zero-shot logits are scale * cosine (+ bias for SigLIP)."""
        return float(self.encoder.logit_scale.exp())

    @property
    def logit_bias(self) -> float:
        bias = getattr(self.encoder, "logit_bias", None)
        return float(bias) if bias is not None else 0.0

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        visual = self.encoder.visual
        if hasattr(visual, "trunk"):
            outputs = timm_tower_features(visual, images, taps)
        else:
            outputs = vit_tower_features(visual, images, taps)
        outputs[IMAGE_EMBED] = F.normalize(outputs[POOLED].float(), dim=-1)
        return {tap: outputs[tap].float() for tap in taps}

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids from the model's own tokenizer (loaded on first use, offline)."""
        if self._tokenizer is None:
            import open_clip

            try:
                self._tokenizer = open_clip.get_tokenizer(self.arch)
            except Exception as error:  # noqa: BLE001 - an HF tokenizer missing from the offline cache
                raise BenchError(
                    f"teacher {self.name!r}: cannot load the tokenizer of {self.arch} "
                    f"({type(error).__name__}); put it in the HF cache or allow downloads"
                ) from None
        return self._tokenizer(list(texts))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings in the same space as `image_embed`."""
        device = next(self.encoder.parameters()).device
        return F.normalize(self.encoder.encode_text(self.tokenize(texts).to(device)).float(), dim=-1)


def open_clip_taps(visual: nn.Module) -> tuple[str, ...]:
    """The image taps of an open_clip vision tower."""
    if hasattr(visual, "trunk"):
        return tuple(tap for tap in timm_taps(visual.trunk) if tap != "imagenet_logits")
    return vit_taps(len(visual.transformer.resblocks))


def config_taps(arch: str) -> tuple[str, ...]:
    """Taps read from the open_clip config (no model is built)."""
    import open_clip

    config = open_clip.get_model_config(arch) or {}
    vision = config.get("vision_cfg", {})
    if "timm_model_name" in vision:
        trunk = meta_taps(vision["timm_model_name"], num_classes=0)
        return (*(tap for tap in trunk if tap != "imagenet_logits"), IMAGE_EMBED)
    return (*vit_taps(int(vision.get("layers", 12))), IMAGE_EMBED)


def tag_config(arch: str, tag: str | None) -> dict[str, Any]:
    """open_clip's pretrained config for (arch, tag), or {} for a local checkpoint."""
    import open_clip

    return dict(open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}


def clip_weights_spec(teacher: str, arch: str, tag: str | None) -> WeightsSpec:
    """Where open_clip keeps (arch, tag) weights: the HF hub cache, else its URL cache."""
    cfg, files = tag_config(arch, tag), OPEN_CLIP_FILES
    hub_id = (cfg.get("hf_hub") or "").strip("/")
    if hub_id:
        return WeightsSpec(teacher, OPEN_CLIP_FILES, f"HF cache ({hub_id})",
                           lambda: hf_cached_file(hub_id, files), hf_download_file(hub_id, files[0]))
    if cfg.get("url"):
        cached = Path("~/.cache/clip").expanduser() / Path(cfg["url"]).name

        def download() -> Path:
            import open_clip

            return Path(open_clip.download_pretrained(cfg))

        return WeightsSpec(teacher, (cached.name, *OPEN_CLIP_FILES), f"open_clip cache ({cached})",
                           lambda: cached if cached.is_file() else None, download)
    where = f"open_clip has no tag {tag!r} for {arch}" if tag else f"no pretrained tag given for {arch}"
    return WeightsSpec(teacher, OPEN_CLIP_FILES, where, lambda: None)


def clip_preprocess(model: nn.Module, cfg: dict[str, Any]) -> Preprocess:
    """Input size from the vision tower, normalisation from the tag's config (OpenAI's by default)."""
    size = getattr(model.visual, "image_size", 224)
    size = size[-1] if isinstance(size, tuple | list) else size
    return Preprocess(int(size), tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD)),
                      cfg.get("interpolation", "bicubic"))


def open_clip_factory(teacher: str, arch: str, tag: str | None) -> Callable[..., Teacher]:
    """A teacher factory: resolve the checkpoint offline first, load it with open_clip.create_model."""

    def build(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
        import open_clip

        resolved = resolve_weights(clip_weights_spec(teacher, arch, tag), weights, allow_download)
        cfg = tag_config(arch, tag)
        try:
            model = open_clip.create_model(
                arch, pretrained=str(resolved.path), force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                pretrained_image=False, pretrained_text=False,
            )
        except Exception as error:  # noqa: BLE001 - a checkpoint that does not fit is the user's to fix
            raise BenchError(
                f"cannot load weights {resolved.path} into open_clip {arch} for teacher {teacher!r}: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            ) from None
        return OpenClipTeacher(teacher, model.eval(), arch, clip_preprocess(model, cfg), resolved.fingerprint)

    build.__doc__ = f"open_clip {arch}" + (f" ({tag})" if tag else "")
    return build


def clip_describer(arch: str, tag: str | None) -> Callable[[Path | None], dict[str, Any]]:
    """Params, joint embedding dim and preprocessing of an open_clip model, from a meta-device build."""

    def describe(_weights: Path | None) -> dict[str, Any]:
        import open_clip

        from bench.teachers.inventory import meta_param_count

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights loaded": intended for a shape-only build
        try:
            with torch.device("meta"):
                model = open_clip.create_model(arch, device="meta", pretrained_image=False, pretrained_text=False)
        finally:
            root.setLevel(level)
        embed_dim = (open_clip.get_model_config(arch) or {}).get("embed_dim")
        return {"params": meta_param_count(model), "embed_dim": embed_dim,
                "preprocess": clip_preprocess(model, tag_config(arch, tag))}

    return describe


def clip_card(teacher: str, arch: str, tag: str | None, taps: tuple[str, ...]) -> TeacherCard:
    """The card of an open_clip teacher: taps, model, and how `bench teachers` checks and describes it."""
    return TeacherCard("open_clip", taps, IMAGE_TEXT, model=f"{arch}:{tag}" if tag else arch,
                       weights_spec=lambda: clip_weights_spec(teacher, arch, tag), describe=clip_describer(arch, tag))


def register_clip_teacher(name: str, arch: str, tag: str | None, description: str) -> None:
    """Register a named open_clip teacher (taps come from the model config)."""
    TEACHERS.add(name, open_clip_factory(name, arch, tag), clip_card(name, arch, tag, config_taps(arch)),
                 description=description)


def _known_arch(arch: str) -> bool:
    import open_clip

    return arch in open_clip.list_models()


@functools.lru_cache(maxsize=64)  # grids resolve each name once per student x method pair
def resolve_open_clip_name(name: str) -> Entry:
    """`open_clip:<arch>[:<tag>]` -> a teacher entry for any open_clip architecture (and pretrained tag)."""
    import open_clip

    arch, _, tag = name.split(":", 1)[1].partition(":")
    if not _known_arch(arch):
        close = nearest_names(arch, open_clip.list_models())
        hint = f"did you mean: {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise UnknownNameError(f"unknown open_clip architecture {arch!r} in teacher {name!r}; {hint}")
    if tag and not open_clip.get_pretrained_cfg(arch, tag):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise UnknownNameError(f"open_clip {arch} has no pretrained tag {tag!r} (teacher {name!r}); tags: {tags}")
    return TEACHERS.make_entry(name, open_clip_factory(name, arch, tag or None),
                               clip_card(name, arch, tag or None, config_taps(arch)), f"open_clip {arch} {tag}".strip())


_NAMED = (
    ("clip-vitb32", "ViT-B-32", "openai", "CLIP ViT-B/32 (OpenAI, 400M image-text pairs)"),
    ("clip-vitb16", "ViT-B-16", "openai", "CLIP ViT-B/16 (OpenAI, 400M image-text pairs)"),
    ("siglip-base", "ViT-B-16-SigLIP", "webli", "SigLIP ViT-B/16 (WebLI, sigmoid loss)"),
)
for _name, _arch, _tag, _description in _NAMED:
    TEACHERS.add(_name, open_clip_factory(_name, _arch, _tag),
                 clip_card(_name, _arch, _tag, (*vit_taps(12), IMAGE_EMBED)), description=_description)
TEACHERS.add_prefix_resolver("open_clip", resolve_open_clip_name)
