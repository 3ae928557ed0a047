"""Student registry: each module registers builders (kind 'head' or 'standalone')."""

from __future__ import annotations

from bench.registry import Registry
from students.base import HEAD, STANDALONE, StudentBuilder, StudentContext

STUDENTS: Registry[StudentBuilder] = Registry("student")

from students import attention_heads, densenet, heads, resnet, timm_student, vit  # noqa: E402,F401

__all__ = ["HEAD", "STANDALONE", "STUDENTS", "StudentBuilder", "StudentContext"]
