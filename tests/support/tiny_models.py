"""Configs of tiny random models that tests build locally (never downloaded)."""

from __future__ import annotations

# an open_clip model config: a 2-layer ViT image tower and a 2-layer text tower, joint space of 16
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
