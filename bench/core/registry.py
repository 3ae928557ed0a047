"""One small generic registry used by teachers, students, methods and datasets."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bench.core.errors import BenchError, UnknownNameError

T = TypeVar("T")
_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


def nearest_names(name: str, candidates: list[str], limit: int = 3) -> list[str]:
    """The closest candidates (ratio >= 0.6), keeping only those nearly as close as the best."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, name, candidate).ratio(), candidate) for candidate in candidates),
        reverse=True,
    )
    scored = [(score, candidate) for score, candidate in scored if score >= 0.6]
    if not scored:
        return []
    best = scored[0][0]
    return [candidate for score, candidate in scored[:limit] if score >= best - 0.1]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its stable name, its typed card (bench/core/cards.py) and a one-line description."""

    name: str
    obj: T
    card: Any
    description: str = ""


class Registry(Generic[T]):
    """Name -> entry mapping; duplicate names are an error, unknown names suggest near ones."""

    def __init__(self, what: str, card_type: type | None = None, package: str | None = None) -> None:
        self.what = what
        self.card_type = card_type  # every entry's card is an instance of it
        self.package = package  # every module of this package is imported before the first lookup
        self._entries: dict[str, Entry[T]] = {}
        self._resolvers: list[tuple[str, Callable[[str], Entry[T]]]] = []
        self._on_loaded: list[Callable[[], None]] = []
        self._loaded = package is None
        self._loading = False

    def _load(self) -> None:
        """Import every module of the package once, so each registers its entries (one file = one unit)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            package = importlib.import_module(self.package)
            for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
                importlib.import_module(f"{self.package}.{module.name}")
            self._loaded = True
        finally:
            self._loading = False
        for hook in self._on_loaded:
            hook()

    def when_loaded(self, hook: Callable[[], None]) -> None:
        """Call `hook` once every module of the package has registered (e.g. to merge other entries' knobs)."""
        self._on_loaded.append(hook)
        if self._loaded:
            hook()

    @contextmanager
    def temporarily(self, name: str, obj: T, card: Any, *, description: str = "") -> Iterator[Entry[T]]:
        """Register `obj` under `name` for the duration of a `with` block (tests' temporary entries)."""
        self._load()
        self.add(name, obj, card, description=description)
        try:
            yield self._entries[name]
        finally:
            self._entries.pop(name, None)

    def register(self, name: str, card: Any, *, description: str = "") -> Callable[[T], T]:
        """Decorator that registers `obj` under a kebab-case `name` with its card."""

        def decorator(obj: T) -> T:
            self.add(name, obj, card, description=description)
            return obj

        return decorator

    def add(self, name: str, obj: T, card: Any, *, description: str = "") -> None:
        """Register `obj` under `name`; raises if the name is taken, not kebab-case, or the card of another kind."""
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"{self.what} name {name!r} must be lower-case kebab-case")
        if name in self._entries:
            raise ValueError(f"duplicate {self.what} name {name!r}")
        self._entries[name] = self.make_entry(name, obj, card, description)

    def make_entry(self, name: str, obj: T, card: Any, description: str = "") -> Entry[T]:
        """An entry with its card checked (prefix resolvers build theirs through this too)."""
        if self.card_type is not None and not isinstance(card, self.card_type):
            raise TypeError(f"{self.what} {name!r}: card must be a {self.card_type.__name__}, got {card!r}")
        if not description and obj.__doc__:
            description = " ".join(obj.__doc__.strip().split("\n\n")[0].split())  # the first paragraph, whole
        return Entry(name, obj, card, description)

    def add_prefix_resolver(self, prefix: str, resolver: Callable[[str], Entry[T]]) -> None:
        """Resolve names `prefix:<rest>` (e.g. `timm:resnet18`) through `resolver`."""
        self._resolvers.append((prefix, resolver))

    def remove(self, name: str) -> None:
        """Unregister `name` (used by tests that register temporary entries)."""
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        """The entry for `name`, or an UnknownNameError naming the nearest known names."""
        self._load()
        if name in self._entries:
            return self._entries[name]
        for prefix, resolver in self._resolvers:
            if name.startswith(prefix + ":"):
                return resolver(name)
        raise UnknownNameError(self.unknown_message(name))

    def get(self, name: str) -> T:
        """The registered object for `name`."""
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        """'unknown student 'resent'; did you mean: resnet?' style message."""
        self._load()
        close = nearest_names(name, list(self._entries))
        hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(self.names())}"
        return f"unknown {self.what} {name!r}; {hint}"

    def check(self, name: str) -> None:
        """Raise a BenchError if `name` cannot be resolved."""
        self.entry(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda entry: entry.name))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


__all__ = ["BenchError", "Entry", "Registry", "UnknownNameError"]
