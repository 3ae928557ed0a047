"""Method registry: each module registers Method subclasses returning named loss terms."""

from __future__ import annotations

from bench.registry import Registry
from methods.base import Method, MethodContext

METHODS: Registry[type[Method]] = Registry("method")

from methods import classic, joint  # noqa: E402,F401  (registers entries)

__all__ = ["METHODS", "Method", "MethodContext"]
