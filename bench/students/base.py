"""Student builders: build an nn.Module from hyperparameters; kind is 'head' or 'standalone'."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bench.core.knobs import Knob, as_knobs, defaults_of
from bench.core.taps import POOLED, tap_family


@dataclass(frozen=True)
class StudentContext:
    """What a builder needs to know about the task and the teacher."""

    num_classes: int
    teacher_dim: int
    image_size: int
    in_channels: int = 3
    input_shape: tuple[int, ...] | None = None  # per-sample shape of a head student's teacher tap
    teacher_params: int = 0  # the teacher's parameter count (used by `vit` with `shrink`)

    @property
    def head_input_shape(self) -> tuple[int, ...]:
        """The per-sample input shape of a head student (pooled (D,) unless told otherwise)."""
        return self.input_shape if self.input_shape is not None else (self.teacher_dim,)


@dataclass(frozen=True)
class StudentBuilder:
    """A registered builder: `build(context, hparams)` and its hyperparameters, declared as Knobs.

    `defaults` is given as {name: Knob} (plain values are accepted as undeclared knobs); after init it is
    the plain {name: default} mapping and `knobs` holds the declarations.
    The module's forward returns {"logits": (N, C), "embedding": (N, D), ...} and it has `embed_dim`.
    `provides` names the output families it gives ("hidden" covers hidden.0, hidden.1, ...);
    `input_taps` are the teacher taps a head student can read, in order of preference.
    """

    build: Callable[[StudentContext, Mapping[str, Any]], nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    provides: frozenset[str] = frozenset({"logits", "embedding"})
    input_taps: tuple[str, ...] = (POOLED,)
    knobs: Mapping[str, Knob] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        knobs = as_knobs(self.defaults)
        object.__setattr__(self, "knobs", knobs)
        object.__setattr__(self, "defaults", defaults_of(knobs))

    def __call__(self, context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
        merged = {**self.defaults, **{k: v for k, v in hparams.items() if k in self.defaults}}
        return self.build(context, merged)

    def input_tap(self, teacher_taps: Collection[str]) -> str | None:
        """The first of `input_taps` whose family the teacher offers, or None."""
        families = {tap_family(tap) for tap in teacher_taps}
        return next((tap for tap in self.input_taps if tap_family(tap) in families), None)
