"""Method registry: each module registers Method subclasses returning named loss terms."""

from __future__ import annotations

from bench.registry import Registry
from methods.base import Method, MethodContext

METHODS: Registry[type[Method]] = Registry("method")

from methods import attention, classic, combined, contrastive, crd, joint, relational, tinybert  # noqa: E402,F401

combined.extend_defaults()

__all__ = ["METHODS", "Method", "MethodContext"]
