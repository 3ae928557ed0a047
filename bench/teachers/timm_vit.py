"""timm teachers: DINO, DINOv2, BEiT and any `timm:<model_name>`, loaded through timm's own checkpoint path."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.core.cards import TeacherCard
from bench.core.errors import BenchError, UnknownNameError
from bench.core.registries import TEACHERS
from bench.core.registry import Entry, nearest_names
from bench.core.taps import POOLED
from bench.teachers.base import Preprocess, Teacher
from bench.teachers.weights import WeightsSpec, hf_cached_file, hf_download_file, resolve_weights

TIMM_FILES = ("model.safetensors", "pytorch_model.bin")


def vit_taps(depth: int, attention: bool = True, scores: bool = False) -> tuple[str, ...]:
    """Tap names of a ViT with `depth` blocks: attn.<i> are probabilities, attn_scores.<i> pre-softmax scores."""
    attn = tuple(f"attn.{i}" for i in range(depth)) if attention else ()
    attn += tuple(f"attn_scores.{i}" for i in range(depth)) if attention and scores else ()
    return (POOLED, "tokens", *(f"hidden.{i}" for i in range(depth)), *attn)


def is_token_model(encoder: nn.Module) -> bool:
    """A ViT-like timm model (blocks over a token sequence) rather than a conv net."""
    return hasattr(encoder, "blocks") and hasattr(encoder, "num_prefix_tokens")


def attention_modules(encoder: nn.Module) -> list[nn.Module] | None:
    """Each block's attention module when all of them expose their probabilities (timm Attention)."""
    if not is_token_model(encoder):
        return None
    modules = [getattr(block, "attn", None) for block in encoder.blocks]
    if all(hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module) for m in modules):
        return modules
    return None


def timm_taps(encoder: nn.Module) -> tuple[str, ...]:
    """The taps a built timm model can give."""
    if is_token_model(encoder):
        attention = attention_modules(encoder) is not None
        taps = vit_taps(len(encoder.blocks), attention=attention, scores=attention)
    else:
        stages = len(getattr(encoder, "feature_info", [])) if hasattr(encoder, "forward_intermediates") else 0
        taps = (POOLED, "feature_map", *(f"hidden.{i}" for i in range(stages)))
    return (*taps, "imagenet_logits") if getattr(encoder, "num_classes", 0) == 1000 else taps


def tap_indices(taps: Sequence[str], prefix: str) -> list[int]:
    """Sorted block indices of taps like `hidden.3`."""
    return sorted({int(tap.split(".", 1)[1]) for tap in taps if tap.startswith(prefix + ".")})


class SoftmaxInputs(TorchFunctionMode):
    """Remembers the input of the latest softmax: inside a timm Attention, the pre-softmax scores."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: torch.Tensor | None = None

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in (torch.Tensor.softmax, torch.softmax, torch.nn.functional.softmax):
            self.latest = args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def capture_attention(modules: Sequence[nn.Module], indices: Sequence[int],
                      score_indices: Sequence[int] = ()) -> Iterator[tuple[dict[int, torch.Tensor],
                                                                           dict[int, torch.Tensor]]]:
    """Collect attention probabilities and pre-softmax scores of chosen timm blocks (fused attention off).

    The explicit path computes scores (with any bias or mask added), softmaxes them and passes the
    probabilities through attn_drop: a hook there keeps the probabilities and the softmax's input.
    """
    probs: dict[int, torch.Tensor] = {}
    scores: dict[int, torch.Tensor] = {}
    softmax_inputs = SoftmaxInputs()

    def keep(index: int, output: torch.Tensor) -> None:
        probs[index] = output
        if index in score_indices and softmax_inputs.latest is not None:
            scores[index] = softmax_inputs.latest

    handles, saved = [], []
    for index in sorted({*indices, *score_indices}):
        module = modules[index]
        saved.append((module, module.fused_attn))
        module.fused_attn = False
        handles.append(module.attn_drop.register_forward_hook(
            lambda _m, _i, output, index=index: keep(index, output)
        ))
    try:
        if score_indices:
            with softmax_inputs:
                yield probs, scores
        else:
            yield probs, scores
    finally:
        for handle in handles:
            handle.remove()
        for module, fused in saved:
            module.fused_attn = fused


def token_features(encoder: nn.Module, images: torch.Tensor, taps: Sequence[str],
                   attn_modules: Sequence[nn.Module] | None) -> dict[str, torch.Tensor]:
    """pooled, tokens, hidden.<i> (patch tokens, no final norm), attn.<i> and attn_scores.<i> of a timm ViT."""
    hidden_ids, attn_ids = tap_indices(taps, "hidden"), tap_indices(taps, "attn")
    score_ids = tap_indices(taps, "attn_scores")
    with capture_attention(attn_modules or [], attn_ids, score_ids) as (attention, scores):
        if hidden_ids:
            final, intermediates = encoder.forward_intermediates(images, indices=hidden_ids, output_fmt="NLC")
        else:
            final, intermediates = encoder.forward_features(images), []
    outputs = {POOLED: encoder.forward_head(final, pre_logits=True), "tokens": final[:, encoder.num_prefix_tokens:]}
    outputs.update({f"hidden.{i}": tensor for i, tensor in zip(hidden_ids, intermediates, strict=True)})
    outputs.update({f"attn.{i}": attention[i] for i in attn_ids})
    outputs.update({f"attn_scores.{i}": scores[i] for i in score_ids})
    if "imagenet_logits" in taps:
        outputs["imagenet_logits"] = encoder.forward_head(final)
    return outputs


def conv_features(encoder: nn.Module, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
    """pooled, feature_map and hidden.<i> (stage outputs) of a timm conv net."""
    hidden_ids = tap_indices(taps, "hidden")
    if hidden_ids:
        final, intermediates = encoder.forward_intermediates(images, indices=hidden_ids)
    else:
        final, intermediates = encoder.forward_features(images), []
    outputs = {POOLED: encoder.forward_head(final, pre_logits=True), "feature_map": final}
    outputs.update({f"hidden.{i}": tensor for i, tensor in zip(hidden_ids, intermediates, strict=True)})
    if "imagenet_logits" in taps:
        outputs["imagenet_logits"] = encoder.forward_head(final)
    return outputs


class TimmTeacher(Teacher):
    """A frozen timm model: ViTs give pooled/tokens/hidden/attn, conv nets pooled/feature_map/hidden."""

    family = "timm"
    modality = "image"

    def __init__(self, name: str, encoder: nn.Module, preprocess: Preprocess, fingerprint: str) -> None:
        super().__init__(name, encoder, preprocess, int(encoder.num_features), fingerprint)
        self.taps = timm_taps(encoder)
        self.token_model = is_token_model(encoder)
        self.channels_last = not self.token_model
        self._attention = attention_modules(encoder)
        self.fixed_input_size = self._fixed_input_size()

    def _fixed_input_size(self) -> int | None:
        patch_embed = getattr(self.encoder, "patch_embed", None)
        if patch_embed is None or getattr(patch_embed, "dynamic_img_pad", False):
            return None
        if getattr(self.encoder, "dynamic_img_size", False) or not getattr(patch_embed, "strict_img_size", True):
            return None
        return int(patch_embed.img_size[-1])

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        if self.fixed_input_size and images.shape[-1] != self.fixed_input_size:
            raise BenchError(
                f"teacher {self.name!r} takes only {self.fixed_input_size} px images (got {images.shape[-1]}); "
                f"set data.image_size: {self.fixed_input_size} in the grid or leave it unset"
            )
        if self.token_model:
            outputs = token_features(self.encoder, images, taps, self._attention)
        else:
            outputs = conv_features(self.encoder, images, taps)
        return {tap: outputs[tap].float() for tap in taps}


def timm_weights_spec(teacher: str, model_name: str) -> WeightsSpec:
    """Where timm keeps `model_name`'s weights: the HF hub cache, or TORCH_HOME for URL-only weights."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    url = getattr(cfg, "url", None) if cfg else None
    if hub_id:
        return WeightsSpec(teacher, TIMM_FILES, f"HF cache ({hub_id})",
                           lambda: hf_cached_file(hub_id, TIMM_FILES), hf_download_file(hub_id, TIMM_FILES[0]))
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        return WeightsSpec(teacher, (cached.name, *TIMM_FILES), f"torch hub cache ({cached})",
                           lambda: cached if cached.is_file() else None, lambda: _download_url(url, cached))
    return WeightsSpec(teacher, TIMM_FILES, f"timm lists no pretrained weights for {model_name}", lambda: None)


def _download_url(url: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target))
    return target


def create_timm_model(model_name: str, weights_file: Path | None, **kwargs: Any) -> nn.Module:
    """timm.create_model with a local checkpoint through timm's own filter (ViTs accept any input size)."""
    import timm

    if weights_file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)})
    try:
        return timm.create_model(model_name, dynamic_img_size=True, **kwargs)
    except TypeError as error:  # models without dynamic_img_size (conv nets, BEiT)
        if "dynamic_img_size" not in str(error):
            raise
        return timm.create_model(model_name, **kwargs)


def timm_preprocess(encoder: nn.Module) -> Preprocess:
    """Preprocessing from the model's pretrained_cfg (what timm's resolve_data_config reads)."""
    cfg = encoder.pretrained_cfg
    return Preprocess(int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]),
                      cfg.get("interpolation", "bicubic"))


def timm_factory(teacher: str, model_name: str, **model_kwargs: Any) -> Callable[..., Teacher]:
    """A teacher factory for a timm model: resolve weights offline first, load them through timm."""

    def build(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
        resolved = resolve_weights(timm_weights_spec(teacher, model_name), weights, allow_download)
        try:
            encoder = create_timm_model(model_name, resolved.path, **model_kwargs)
        except Exception as error:  # noqa: BLE001 - a file that does not fit is the user's to fix
            raise BenchError(
                f"cannot load weights {resolved.path} into timm {model_name} for teacher {teacher!r}: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            ) from None
        return TimmTeacher(teacher, encoder, timm_preprocess(encoder), resolved.fingerprint)

    build.__doc__ = f"timm {model_name}"
    return build


def timm_describer(model_name: str, **model_kwargs: Any) -> Callable[[Path | None], dict[str, Any]]:
    """Params, embedding dim and preprocessing of a timm model, from a meta-device build."""

    def describe(_weights: Path | None) -> dict[str, Any]:
        from bench.teachers.inventory import meta_param_count

        with torch.device("meta"):
            encoder = create_timm_model(model_name, None, **model_kwargs)
        return {"params": meta_param_count(encoder), "embed_dim": int(encoder.num_features),
                "preprocess": timm_preprocess(encoder)}

    return describe


def timm_card(teacher: str, model_name: str, taps: tuple[str, ...], **model_kwargs: Any) -> TeacherCard:
    """The card of a timm teacher: taps, model, and how `bench teachers` checks and describes it."""
    return TeacherCard("timm", taps, model=model_name, weights_spec=lambda: timm_weights_spec(teacher, model_name),
                       describe=timm_describer(model_name, **model_kwargs))


def register_timm_teacher(name: str, model_name: str, description: str, blocks: int | None = None,
                          imagenet_logits: bool = False, **model_kwargs: Any) -> None:
    """Register a named timm teacher (`blocks` lists a ViT's taps without building it; else built on meta)."""
    if blocks is None:
        taps = meta_taps(model_name, **model_kwargs)
    else:
        taps = (*vit_taps(blocks, scores=True), "imagenet_logits") if imagenet_logits else vit_taps(blocks, scores=True)
    TEACHERS.add(name, timm_factory(name, model_name, **model_kwargs),
                 timm_card(name, model_name, taps, **model_kwargs), description=description)


def meta_taps(model_name: str, **model_kwargs: Any) -> tuple[str, ...]:
    """Taps of a timm model, found by building it on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        return timm_taps(create_timm_model(model_name, None, **model_kwargs))


@functools.lru_cache(maxsize=64)  # grids resolve each name once per student x method pair
def resolve_timm_name(name: str) -> Entry:
    """`timm:<model_name>[.<tag>]` -> a teacher entry for any model timm knows."""
    import timm

    model_name = name.split(":", 1)[1]
    if not timm.is_model(model_name):
        close = nearest_names(model_name, timm.list_models(pretrained=True) + timm.list_models())
        hint = f"did you mean: {', '.join('timm:' + c for c in close)}?" if close else "see timm.list_models()"
        raise UnknownNameError(f"unknown timm model {model_name!r} in teacher {name!r}; {hint}")
    return TEACHERS.make_entry(name, timm_factory(name, model_name), timm_card(name, model_name, meta_taps(model_name)),
                               f"timm {model_name}")


for _name, _model, _logits, _description in (
    ("dino-vits16", "vit_small_patch16_224.dino", False, "DINO ViT-S/16 (self-supervised, ImageNet-1k)"),
    ("dino-vitb16", "vit_base_patch16_224.dino", False, "DINO ViT-B/16 (self-supervised, ImageNet-1k)"),
    ("dinov2-vits14", "vit_small_patch14_dinov2.lvd142m", False, "DINOv2 ViT-S/14 (self-supervised, LVD-142M)"),
    ("dinov2-vitb14", "vit_base_patch14_dinov2.lvd142m", False, "DINOv2 ViT-B/14 (self-supervised, LVD-142M)"),
    ("beit-base", "beit_base_patch16_224.in22k_ft_in22k_in1k", True,
     "BEiT-B/16, fine-tuned: self-supervised MIM on 22k, then supervised 22k+1k"),
    ("beitv2-base", "beitv2_base_patch16_224.in1k_ft_in1k", True,
     "BEiT v2-B/16, fine-tuned: self-supervised VQ-KD MIM on 1k, then supervised 1k"),
):
    register_timm_teacher(_name, _model, _description, blocks=12, imagenet_logits=_logits)
TEACHERS.add_prefix_resolver("timm", resolve_timm_name)
