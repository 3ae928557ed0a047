"""Entries that a bench `register_*` function adds, held only for a `with` block (through Registry.temporarily)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.core.registry import Entry, Registry


@contextmanager
def registered_by(registry: Registry, name: str, register: Callable[..., None], *args: Any,
                  **kwargs: Any) -> Iterator[Entry]:
    """Call `register(name, *args, **kwargs)` (the code under test) and keep its entry only inside the block."""
    register(name, *args, **kwargs)
    entry = registry.entry(name)
    registry.remove(name)  # handed over to temporarily(), which owns its removal
    with registry.temporarily(name, entry.obj, entry.card, description=entry.description) as held:
        yield held
