"""Teacher registry: each module registers named frozen encoders."""

from __future__ import annotations

from bench.registry import Registry
from teachers.base import Preprocess, Teacher

TEACHERS: Registry = Registry("teacher")
GENERIC_NAMES = ("timm:<model_name>", "open_clip:<arch>[:<pretrained_tag>]", "hf:<org>/<repo>")

from teachers import blip, clip, effnet, timm_vit  # noqa: E402,F401  (register entries)

__all__ = ["GENERIC_NAMES", "TEACHERS", "Preprocess", "Teacher"]
