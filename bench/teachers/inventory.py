"""`bench teachers`: each teacher's family, size, input, normalisation, taps and whether its weights are here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.registry import Entry
from bench.teachers.base import Preprocess
from bench.teachers.weights import resolve_weights


@dataclass(frozen=True)
class TeacherInfo:
    """One row of `bench teachers` (None where it cannot be known without the weights)."""

    name: str
    family: str
    params: int | None
    embed_dim: int | None
    preprocess: Preprocess | None
    taps: tuple[str, ...]
    weights: str | None  # the local file or directory that would be loaded
    weights_origin: str  # explicit | bench-weights | cache | packaged | missing
    missing: str | None  # the one-line error a run would give

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "family": self.family, "params": self.params, "embed_dim": self.embed_dim,
            "preprocess": self.preprocess.as_dict() if self.preprocess else None, "taps": list(self.taps),
            "weights": self.weights, "weights_origin": self.weights_origin, "available": self.missing is None,
            "missing": self.missing,
        }


def compact_taps(taps: tuple[str, ...]) -> str:
    """'pooled, tokens, hidden.0-11, attn.0-11' instead of 26 names."""
    groups: dict[str, list[int]] = {}
    plain: list[str] = []
    for tap in taps:
        match = re.fullmatch(r"(\w+)\.(\d+)", tap)
        if match:
            groups.setdefault(match[1], []).append(int(match[2]))
        else:
            plain.append(tap)
    ranged = [f"{name}.{min(ids)}-{max(ids)}" if len(ids) > 1 else f"{name}.{ids[0]}" for name, ids in groups.items()]
    return ", ".join(plain[:2] + ranged + plain[2:])


def describe_teacher(entry: Entry, weights: str | None = None,
                     memo: dict[str, dict[str, Any]] | None = None) -> TeacherInfo:
    """Resolve the weights without downloading and describe the architecture (built on the meta device)."""
    path, origin, missing = None, "packaged", None
    spec_fn, packaged = entry.card.weights_spec, entry.card.packaged_weights
    try:
        if spec_fn is not None:
            resolved = resolve_weights(spec_fn(), weights, allow_download=False)
            path, origin = resolved.path, resolved.origin
        elif weights is not None:
            path, origin = Path(weights), "explicit"
            if not path.exists():
                raise BenchError(f"weights for teacher {entry.name!r} not found: {path} does not exist")
        elif packaged is not None:
            path = packaged()
    except BenchError as error:
        path, origin, missing = None, "missing", str(error)
    facts = describe_facts(entry, path, memo)
    return TeacherInfo(entry.name, entry.card.library, facts.get("params"), facts.get("embed_dim"),
                       facts.get("preprocess"),
                       entry.card.taps, str(path) if path else None, origin, missing)


def describe_facts(entry: Entry, path: Path | None, memo: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """params, embed_dim and preprocess: from `memo` (the cached inventory) when there, else built and added."""
    from bench.teachers.inventory_cache import entry_key

    key = entry_key(entry.name, Path(path) if path else None)
    if memo is not None and key in memo:
        stored = memo[key]
        pre = stored.get("preprocess")
        return {**stored, "preprocess": Preprocess(pre["input_size"], tuple(pre["mean"]), tuple(pre["std"]),
                                                   pre["interpolation"]) if pre else None}
    describe = entry.card.describe
    facts: dict[str, Any] = describe(path) if describe is not None else {}
    if memo is not None:
        pre = facts.get("preprocess")
        memo[key] = {"params": facts.get("params"), "embed_dim": facts.get("embed_dim"),
                     "preprocess": pre.as_dict() if pre else None}
    return facts


def meta_param_count(module: Any) -> int:
    """Parameter count (works for models built on the meta device)."""
    return sum(parameter.numel() for parameter in module.parameters())


def inventory(names: list[str] | None, weights: dict[str, str] | None = None,
              on_teacher: Callable[[int, int, str], None] | None = None) -> list[TeacherInfo]:
    """Describe the named teachers (generic `timm:`/`open_clip:`/`hf:` names too), or every registered one.

    `on_teacher(i, n, name)` is called before each one (the CLI's progress line). What each architecture gives is
    kept in the cached inventory (bench/teachers/inventory_cache.py), so a second call builds nothing.
    """
    from bench.core.registries import TEACHERS
    from bench.teachers.inventory_cache import cache_path, read_entries, version_key, write_entries

    weights = weights or {}
    names = names or TEACHERS.names()
    path, key = cache_path(), version_key()
    memo = read_entries(path, key)
    before = dict(memo)
    infos = []
    for index, name in enumerate(names):
        if on_teacher is not None:
            on_teacher(index, len(names), name)
        infos.append(describe_teacher(TEACHERS.entry(name), weights.get(name), memo))
    if memo != before:
        write_entries(path, key, memo)
    return infos


def inventory_table(infos: list[TeacherInfo]) -> Any:
    """A rich table: one row per teacher, then the missing-weights hints below it."""
    from rich.table import Table

    table = Table(title="teachers", title_justify="left")
    for column in ("name", "family", "params", "dim", "input", "normalisation", "taps", "weights"):
        table.add_column(column, overflow="fold")
    for info in infos:
        pre = info.preprocess
        table.add_row(
            info.name, info.family, f"{info.params / 1e6:.1f}M" if info.params else "-",
            str(info.embed_dim or "-"), f"{pre.input_size} px" if pre else "-",
            normalisation_name(pre) if pre else "-", compact_taps(info.taps),
            "MISSING" if info.missing else f"{info.weights_origin}: {info.weights}",
        )
    return table


_NORMALISATIONS = {
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)): "imagenet",
    ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)): "openai-clip",
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): "inception (0.5)",
}


def normalisation_name(pre: Preprocess) -> str:
    """'imagenet', 'openai-clip', 'inception (0.5)', or the numbers."""
    key = (tuple(round(v, 8) for v in pre.mean), tuple(round(v, 8) for v in pre.std))
    named = {(tuple(round(v, 8) for v in m), tuple(round(v, 8) for v in s)): n for (m, s), n in _NORMALISATIONS.items()}
    return named.get(key) or f"{','.join(f'{v:.3g}' for v in pre.mean)} / {','.join(f'{v:.3g}' for v in pre.std)}"
