"""`bench teachers fetch`: download teachers' weights into their libraries' own hub caches, then load each once.

Afterwards every run finds the weights offline (bench/teachers/weights.py looks in those caches).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import BenchError

PAPER_TEACHERS = ("dino-vitb16", "beit-base", "clip-vitb16", "blip-base", "dino-vits16")  # the studies/paper-*
# grids and studies/vit-cifar100.yaml


@dataclass(frozen=True)
class Fetched:
    """Where a teacher's weights landed and what loaded from them."""

    name: str
    path: str
    origin: str  # download | cache | bench-weights | packaged
    params: int


def fetch_teacher(name: str) -> Fetched:
    """Download `name`'s weights (unless already here) and build the teacher from them; a BenchError if not."""
    from bench.core.registries import TEACHERS
    from bench.teachers.weights import resolve_weights

    entry = TEACHERS.entry(name)
    if entry.card.weights_spec is None:
        if entry.card.packaged_weights is None:
            raise BenchError(f"{name}: has no download source; give its weights with --weights {name}=PATH")
        teacher = entry.obj(None)
        return Fetched(name, str(entry.card.packaged_weights()), "packaged", teacher.num_params())
    resolved = resolve_weights(entry.card.weights_spec(), None, allow_download=True)
    try:
        teacher = entry.obj(str(resolved.path))
    except BenchError as error:
        raise BenchError(f"{name}: downloaded to {resolved.path} but it does not load: {error}") from None
    return Fetched(name, str(resolved.path), resolved.origin, teacher.num_params())


def fetch_all(names: list[str]) -> tuple[list[Fetched], list[str]]:
    """Fetch each teacher; (what landed, one error line per teacher that did not)."""
    fetched, failed = [], []
    for name in names:
        try:
            fetched.append(fetch_teacher(name))
        except BenchError as error:
            failed.append(f"{name}: not fetched: {error}")
    return fetched, failed
