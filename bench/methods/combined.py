"""`combined`: any registered methods summed with weights, e.g. combine: "kd:0.7,attention:1.0"."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bench.core.cards import MethodCard
from bench.core.errors import BenchError
from bench.core.knobs import Knob, defaults_of, loss_weight
from bench.core.registries import METHODS
from bench.core.taps import POOLED
from bench.methods.base import Method, MethodContext, Requirements, Shape


def parse_combine(spec: str) -> dict[str, float]:
    """'kd:0.7,attention' -> {'kd': 0.7, 'attention': 1.0} (names checked against the registry)."""
    parts: dict[str, float] = {}
    for item in str(spec).split(","):
        name, _, weight = item.strip().partition(":")
        if name == "combined" or name not in METHODS or name in parts:
            why = "a known method other than combined, once" if name not in parts else "each method once"
            raise BenchError(f"hparam combine {spec!r}: {name!r} must be {why} (e.g. 'kd:0.7,attention:1')")
        try:
            parts[name] = float(weight) if weight else 1.0
        except ValueError:
            raise BenchError(f"hparam combine {spec!r}: weight {weight!r} of {name!r} is not a number") from None
    return parts


COMBINE = Knob("kd:1,feature:1", str, help="'method:weight,...' of the parts summed")
CE_WEIGHT = loss_weight(1.0, "weight of the one CE term (RepDistiller -r)")


@METHODS.register("combined", MethodCard("combined"))
class Combined(Method):
    """Sum of the listed methods' terms: CE once at `ce_weight`, each part's other terms at its combine weight.

    A part's own weights still scale its terms (beta, crd_weight, ...), but `kd`'s term weighs 1 here: its alpha
    only trades CE, which `ce_weight` sets, so a published combination is written as published, e.g.
    RepDistiller's CRD+KD (-r 1 -a 1 -b 0.8) is `combine: "crd:1,kd:1"` (CE 1, KD 1, CRD 0.8).
    """

    knobs: Mapping[str, Knob] = {"combine": COMBINE, "ce_weight": CE_WEIGHT}  # extended with every part's knobs
    listed_knobs: Mapping[str, Knob] = {"combine": COMBINE, "ce_weight": CE_WEIGHT}  # `bench list`, beside the parts'
    needs_teacher = frozenset({"logits", POOLED})
    needs_student = frozenset({"logits", "embedding"})

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__(context, hparams)
        self.weights = parse_combine(self.hparams["combine"])
        self.parts = nn.ModuleDict({name: METHODS.get(name)(context, self.hparams) for name in self.weights})

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        merged = cls.merge(hparams)
        needs = [METHODS.get(name).requirements(merged, teacher_taps, student_provides)
                 for name in parse_combine(merged["combine"])]
        return Requirements(frozenset().union(*(n.student for n in needs)),
                            frozenset().union(*(n.teacher for n in needs)))

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        merged = cls.merge(hparams)
        return frozenset().union(*(METHODS.get(name).teacher_taps(merged, teacher_taps, student_shapes)
                                   for name in parse_combine(merged["combine"])))

    @classmethod
    def class_prompts(cls, hparams: Mapping[str, Any], class_names: Sequence[str]) -> list[str] | None:
        merged = cls.merge(hparams)
        prompts = [METHODS.get(name).class_prompts(merged, class_names) for name in parse_combine(merged["combine"])]
        return next((p for p in prompts if p is not None), None)

    def term_weights(self) -> dict[str, float]:
        weights: dict[str, float] = {}
        has_ce = False
        for name, part in self.parts.items():
            has_ce = has_ce or "ce" in part.term_weights()  # type: ignore[operator]
            for term, weight in part.part_weights().items():  # type: ignore[operator]
                weights[term] = self.weights[name] * weight
        return {"ce": float(self.hparams["ce_weight"]), **weights} if has_ce else weights

    def forward(self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for part in self.parts.values():
            for term, value in part(student, teacher, labels).items():
                terms.setdefault(term, value)
        return terms


def extend_defaults() -> None:
    """Let grids tune every part's hyperparameters through `combined` (their names never clash).

    Joint-space (image-text retrieval) methods are not parts: retrieval datasets take them alone.
    """
    merged: dict[str, Knob] = {}
    for entry in METHODS:
        if entry.name != "combined" and not entry.card.joint_space:
            merged.update(entry.obj.knobs)
    Combined.knobs = {**merged, "combine": COMBINE, "ce_weight": CE_WEIGHT}
    Combined.defaults = defaults_of(Combined.knobs)


METHODS.when_loaded(extend_defaults)  # once every method module has registered
