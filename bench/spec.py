"""ExperimentSpec (one run) with a stable hash key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
