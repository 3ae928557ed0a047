"""Distillation methods: modules whose forward returns named loss terms; the runner weights them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.knobs import Knob, as_knobs, defaults_of
from bench.core.taps import POOLED
from bench.students.base import tap_family

Shape = tuple[int, ...]
REPDISTILLER = "RepDistiller scripts/run_cifar_distill.sh"  # HobbitLong/RepDistiller, the CRD paper's code
MDISTILLER = "mdistiller mdistiller/engine/cfg.py"  # megvii-research/mdistiller


@dataclass(frozen=True)
class Reference:
    """A knob's value in the reference implementation a method cites, and where it is written."""

    value: Any
    source: str


@dataclass(frozen=True)
class MethodContext:
    """Dimensions a method needs to build its own trainable parts (projections)."""

    num_classes: int
    teacher_dim: int
    student_dim: int
    student_shapes: Mapping[str, Shape] = field(default_factory=dict)  # output name -> per-sample shape
    teacher_shapes: Mapping[str, Shape] = field(default_factory=dict)  # tap name -> per-sample shape
    class_text: torch.Tensor | None = None  # (C, E) teacher text embeddings of the class prompts
    train_labels: torch.Tensor | None = None  # (N_train,) labels of the training rows (CRD's per-sample banks)

    def student_shape(self, name: str) -> Shape:
        """Per-sample shape of a student output (the embedding's is known without a dry run)."""
        if name in self.student_shapes:
            return tuple(self.student_shapes[name])
        if name == "embedding":
            return (self.student_dim,)
        raise BenchError(f"the student gives no output {name!r}; it gives {sorted(self.student_shapes)}")

    def teacher_shape(self, name: str) -> Shape:
        """Per-sample shape of a teacher tap (the pooled embedding's is known without a probe)."""
        if name in self.teacher_shapes:
            return tuple(self.teacher_shapes[name])
        if name == POOLED:
            return (self.teacher_dim,)
        raise BenchError(f"the teacher gives no tap {name!r}; it gives {sorted(self.teacher_shapes)}")


@dataclass(frozen=True)
class Requirements:
    """Output families a method reads: from the student ('hidden' covers hidden.<i>) and the teacher."""

    student: frozenset[str]
    teacher: frozenset[str]  # tap families, plus 'logits' (probe KD targets) and 'text' (encode_text)


def _detach_teacher(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Teacher outputs are constants to every method: no gradient ever flows back into a teacher."""
    if len(args) >= 2 and isinstance(args[1], Mapping):
        return (args[0], {name: value.detach() for name, value in args[1].items()}, *args[2:])
    return args


class Method(nn.Module):
    """Base class: declare `knobs`, `needs_teacher`, `needs_student`; return loss terms.

    `defaults` ({name: default}) is derived from `knobs`; a subclass giving plain `defaults` gets loose knobs.
    """

    knobs: ClassVar[Mapping[str, Knob]] = {}
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs_teacher: ClassVar[frozenset[str]] = frozenset()
    needs_student: ClassVar[frozenset[str]] = frozenset({"logits"})
    needs_text: ClassVar[bool] = False  # joint-space methods: also reads the per-image caption embedding
    reads_train_labels: ClassVar[bool] = False  # reads every train row's label (MethodContext.train_labels)
    references: ClassVar[Mapping[str, Reference]] = {}  # knob -> the cited implementation's value (issue 29)
    departures: ClassVar[Mapping[str, str]] = {}  # knob -> why its default is not the reference's value
    label_smoothing: float = 0.0  # of the CE term; the trainer sets the run's (hparam label_smoothing)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "knobs" in cls.__dict__:
            cls.defaults = defaults_of(cls.knobs)
        elif "defaults" in cls.__dict__:
            cls.knobs = as_knobs(cls.defaults)

    def __init__(self, context: MethodContext, hparams: Mapping[str, Any]) -> None:
        super().__init__()
        self.context = context
        self.hparams = self.merge(hparams)
        self.register_forward_pre_hook(_detach_teacher)

    @classmethod
    def merge(cls, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """The method's defaults overridden by the hparams it knows."""
        return {**cls.defaults, **{k: v for k, v in hparams.items() if k in cls.defaults}}

    @classmethod
    def requirements(cls, hparams: Mapping[str, Any], teacher_taps: Collection[str],
                     student_provides: Collection[str]) -> Requirements:
        """What this method reads with these hparams from this teacher and student (checked at load time)."""
        return Requirements(cls.needs_student, cls.needs_teacher)

    @classmethod
    def teacher_taps(cls, hparams: Mapping[str, Any], teacher_taps: Sequence[str],
                     student_shapes: Mapping[str, Shape]) -> frozenset[str]:
        """Concrete teacher outputs read per training sample (tap names and 'logits')."""
        families = frozenset(tap_family(name) for name in student_shapes)
        return cls.requirements(hparams, teacher_taps, families).teacher - {"text"}

    @classmethod
    def class_prompts(cls, hparams: Mapping[str, Any], class_names: Sequence[str]) -> list[str] | None:
        """Texts the teacher must encode once per run (methods reading 'text'); None when not needed."""
        return None

    def term_weights(self) -> dict[str, float]:
        """Weight of each named term in the total loss."""
        return {"ce": 1.0}

    def part_weights(self) -> dict[str, float]:
        """Weights of the non-CE terms when this method is a part of `combined` (which sets CE's weight itself)."""
        return {term: weight for term, weight in self.term_weights().items() if term != "ce"}

    @classmethod
    def stacked_terms(cls, methods: Sequence[Method], student: Mapping[str, torch.Tensor],
                      teacher: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of every model of a bundle at once (bench/run/train_bundle.py): student outputs and
        teacher rows [M, B, ...], labels [M, B], one method (its own hparams) per model; each term [M], model m's
        equal to what `methods[m].forward` gives on its slice up to float rounding. Only the methods that bundle
        (bench/run/bundle.py STATELESS_METHODS) define it."""
        raise NotImplementedError(f"{cls.__name__} does not train in a bundle")

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms (a term missing a weight is an error, not silently dropped)."""
        weights = self.term_weights()
        return sum(weights[name] * value for name, value in terms.items())  # type: ignore[return-value]

    def num_params(self) -> int:
        """Trainable parameters the method adds (projections); reported with every run."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
