"""ExperimentSpec (one run) with a stable hash key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.core.names import (
    FINETUNE_METHOD,
    FINETUNE_STUDENT,
    PROBE_METHOD,
    PROBE_STUDENT,
    TEACHER_VIEW_FIELDS,
    ZERO_SHOT_STUDENT,
)

SPEC_VERSION = 1  # bump when the meaning of a spec field changes, so old keys stop matching


def _freeze(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), v) for k, v in mapping.items()))


@dataclass(frozen=True)
class ExperimentSpec:
    """teacher x student x method x dataset x hparams x data x epochs x seed: one run."""

    teacher: str
    student: str
    method: str
    dataset: str
    hparams: tuple[tuple[str, Any], ...]
    data: tuple[tuple[str, Any], ...]
    epochs: int
    seed: int

    @classmethod
    def create(
        cls, *, teacher: str, student: str, method: str, dataset: str,
        hparams: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
        epochs: int, seed: int,
    ) -> ExperimentSpec:
        return cls(
            teacher, student, method, dataset, _freeze(hparams or {}), _freeze(data or {}),
            int(epochs), int(seed),
        )

    @property
    def hparams_dict(self) -> dict[str, Any]:
        return dict(self.hparams)

    @property
    def data_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher, "student": self.student, "method": self.method,
            "dataset": self.dataset, "hparams": self.hparams_dict, "data": self.data_dict,
            "epochs": self.epochs, "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExperimentSpec:
        return cls.create(**values)

    def canonical_json(self) -> str:
        """Key-sorted compact JSON with the spec version: the input of the hash."""
        payload = {"version": SPEC_VERSION, **self.to_dict()}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)

    @property
    def key(self) -> str:
        """Stable across processes and machines: sha256 of the canonical JSON, 16 hex chars."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.teacher}/{self.student}/{self.method}/{self.dataset} seed={self.seed}"


HPARAM_ALIASES = {"temperature": "T", "lr": "lr", "learning_rate": "lr", "weight_decay": "wd", "batch_size": "bs"}
_ALIAS_ORDER = list(HPARAM_ALIASES)  # labels list the common names first, in this order, then the rest sorted


def short_value(value: Any) -> str:
    """A number in short %g form ('1e-4', '0.01', '8'); anything else as str."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    general = f"{value:g}"
    mantissa, _, exponent = f"{value:.5e}".partition("e")  # %g's six significant digits
    scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return scientific if len(scientific) < len(general) else general


def differing_keys(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    """Keys whose value (or presence) differs between the mappings (common names first): what tells them apart."""
    mappings = list(mappings)
    keys = sorted({str(k) for m in mappings for k in m},
                  key=lambda k: (_ALIAS_ORDER.index(k) if k in HPARAM_ALIASES else len(_ALIAS_ORDER), k))

    def seen(mapping: Mapping[str, Any], key: str) -> str:
        return json.dumps(mapping[key], sort_keys=True, default=str) if key in mapping else "<absent>"

    return [k for k in keys if len({seen(m, k) for m in mappings}) > 1]


def differing_hparams(specs: Iterable[ExperimentSpec]) -> list[str]:
    """The hyperparameter names whose values differ between these specs."""
    return differing_keys(spec.hparams_dict for spec in specs)


def hparam_label(hparams: Mapping[str, Any], keys: Iterable[str]) -> str:
    """'T=1, lr=1e-4': the given keys with short aliases and short numbers (keys absent here are left out)."""
    return ", ".join(f"{HPARAM_ALIASES.get(k, k)}={short_value(hparams[k])}" for k in keys if k in hparams)


def label_with(spec: ExperimentSpec, keys: Iterable[str]) -> str:
    """spec.label() followed by the differing hyperparameters, e.g. '.../kd/digits seed=0 T=8'."""
    extra = hparam_label(spec.hparams_dict, keys)
    return f"{spec.label()} {extra}" if extra else spec.label()


def setting_labels(specs: Iterable[ExperimentSpec]) -> dict[str, str]:
    """spec key -> label_with(spec, hparams that differ within its teacher/student/method/dataset/epochs group)."""
    groups: dict[tuple, list[ExperimentSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.teacher, spec.student, spec.method, spec.dataset, spec.epochs), []).append(spec)
    return {spec.key: label_with(spec, differing_hparams(group)) for group in groups.values() for spec in group}


def probe_spec(teacher: str, dataset: str, data: dict) -> ExperimentSpec:
    """The teacher-reference cell of a grid: a linear probe on the teacher's features (or its zero-shot head, or
    the teacher fine-tuned on the task). Torch-free, so a finished grid's re-run can find its keys cheaply."""
    reference = data.get("teacher_reference")
    student = {"zero-shot": ZERO_SHOT_STUDENT, "finetune": FINETUNE_STUDENT}.get(reference, PROBE_STUDENT)
    method = FINETUNE_METHOD if reference == "finetune" else PROBE_METHOD
    data = {key: value for key, value in data.items() if key not in TEACHER_VIEW_FIELDS}  # one per view setting
    return ExperimentSpec.create(teacher=teacher, student=student, method=method,
                                 dataset=dataset, hparams={}, data=data, epochs=0, seed=0)
