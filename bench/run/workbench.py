"""Per-process memo of a sweep: the device, and each teacher, dataset, teacher output, reference and teacher cost
loaded or computed once (the modules that own them compute them)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import replace

import torch

from bench.core.errors import BenchError
from bench.core.registries import TEACHERS
from bench.core.taps import IMAGE_EMBED, LOGITS, POOLED
from bench.data.splits import DataConfig, DatasetSplits, load_dataset
from bench.deploy.inference_cost import InferenceCost
from bench.deploy.model import has_own_head, head_cost, teacher_head, teacher_pass_cost, teacher_pass_key
from bench.run.context import RunContext
from bench.run.threads import apply_threads
from bench.teacher_outputs.cache import CacheEvent, FeatureCache
from bench.teacher_outputs.features import TeacherOutputs, teacher_pass
from bench.teacher_outputs.finetune import FinetuneResult, finetune_config, finetune_teacher, finetuned_outputs
from bench.teacher_outputs.probe import ProbeResult
from bench.teacher_outputs.reference import (
    finetune_reference,
    linear_probe,
    own_head_reference,
    zero_shot_reference,
)
from bench.teacher_outputs.views import Labeller, ViewCache, view_cache
from bench.teachers.base import Teacher

FEATURE_TAPS = (POOLED,)


def available_devices() -> list[str]:
    """The devices this torch build and machine can run on: cpu, cuda and cuda:N per visible GPU, mps."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything this build cannot train on is a user error with the list."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    devices = available_devices()
    if name not in devices:
        shown = name if name.isprintable() and len(name) <= 40 else repr(name[:40])
        raise BenchError(f"--device {shown}: not a device this machine can train on; use one of: "
                         f"auto, {', '.join(devices)}")
    return torch.device(name)


class Workbench:
    """Loads each teacher and dataset once and memoises teacher outputs, references and teacher costs."""

    def __init__(self, context: RunContext, weights: dict[str, str] | None = None) -> None:
        self.context = context
        self.device = resolve_device(context.device)
        if context.threads is not None:
            apply_threads(context.threads)
        self.cache = FeatureCache(context.cache_dir)
        self.weights = dict(weights or {})
        self._teachers: dict[str, Teacher] = {}
        self._outputs: dict[tuple, tuple[TeacherOutputs, weakref.ref]] = {}  # -> outputs, the data that asked first
        self._probes: dict[tuple, ProbeResult] = {}
        self._finetuned: dict[tuple, FinetuneResult] = {}
        self._teacher_costs: dict[tuple, InferenceCost] = {}
        self._teacher_passes: dict[tuple, tuple[InferenceCost, tuple[int, ...]]] = {}
        self._views: dict[tuple, ViewCache] = {}

    def teacher(self, name: str) -> Teacher:
        if name not in self._teachers:
            factory = TEACHERS.get(name)
            self._teachers[name] = factory(self.weights.get(name), allow_download=self.context.allow_download)
        return self._teachers[name]

    def data(self, name: str, config: DataConfig) -> DatasetSplits:
        if self.context.skip_bad and not config.skip_bad:
            config = replace(config, skip_bad=True)
        return load_dataset(name, config, self.context.data_root, cache_dir=self.context.cache_dir,
                            allow_download=self.context.allow_download)

    def teacher_outputs(self, teacher_name: str, data: DatasetSplits,
                        taps: Sequence[str] = FEATURE_TAPS) -> TeacherOutputs:
        """The taps' outputs for train/val/test, memoised per process; see `_memo_events` for hits and misses."""
        if POOLED in taps and getattr(self.teacher(teacher_name), "num_classes", None) is not None:
            taps = (*taps, LOGITS)  # a trained run: its logits (the reference and KD targets) in the same pass
        taps = tuple(sorted(set(taps)))
        memo_key = (teacher_name, data.name, data.config, taps)
        if memo_key in self._outputs:
            cached, owner = self._outputs[memo_key]
            return TeacherOutputs(cached.features, self._memo_events(cached, owner, data))
        if data.config.teacher_reference == "finetune":
            outputs = finetuned_outputs(self.finetuned(teacher_name, data), taps)
        else:
            outputs = teacher_pass(self.teacher(teacher_name), data, taps, self.cache, self.device)
        self._outputs[memo_key] = (outputs, weakref.ref(data))
        return outputs

    def teacher_pass_cost(self, teacher_name: str, data: DatasetSplits,
                          tap: str) -> tuple[InferenceCost, tuple[int, ...]]:
        """The teacher pass's cost up to `tap` and the tap's shape (bench/deploy/model.py `teacher_pass_cost`),
        measured once per teacher, input size, tap and device in this process: the teacher and every head student
        reading that tap share it, so a grid times each teacher once."""
        teacher = self.teacher(teacher_name)
        memo_key = teacher_pass_key(teacher, data, tap, self.device)
        if memo_key not in self._teacher_passes:
            self._teacher_passes[memo_key] = teacher_pass_cost(teacher, data, tap, self.device)
        return self._teacher_passes[memo_key]

    def teacher_cost(self, teacher_name: str, data: DatasetSplits, retrieval: bool) -> InferenceCost:
        """The teacher's inference cost as deployed: its memoised teacher pass, then its reference head's shape
        (bench/deploy/model.py `teacher_head`), once per teacher, input size, head shape and device."""
        teacher = self.teacher(teacher_name)
        tap, head = teacher_head(teacher, data, retrieval)  # no head: a trained run's logits are its own output
        memo_key = (*teacher_pass_key(teacher, data, tap, self.device), retrieval or data.num_classes)
        if memo_key not in self._teacher_costs:
            teacher_pass, shape = self.teacher_pass_cost(teacher_name, data, tap)
            self._teacher_costs[memo_key] = teacher_pass if head is None else teacher_pass.then(
                head_cost(head, shape, self.device))
        return self._teacher_costs[memo_key]

    def finetuned(self, teacher_name: str, data: DatasetSplits) -> FinetuneResult:
        """The teacher fine-tuned on the labeled train rows (data.teacher_reference: finetune), cached on disk."""
        memo_key = (teacher_name, data.name, data.config)
        if memo_key not in self._finetuned:
            config = finetune_config(data.config, len(data.train))
            self._finetuned[memo_key] = finetune_teacher(self.teacher(teacher_name), data, config, self.cache,
                                                         self.device)
        return self._finetuned[memo_key]

    @staticmethod
    def _memo_events(cached: TeacherOutputs, owner: weakref.ref, data: DatasetSplits) -> list[CacheEvent]:
        """Honest counts for a memo repeat: the same run sees its first lookup's events, a later run sees hits.

        A run is everything asked with one DatasetSplits object (run_spec loads its data once per run), so a
        run whose first request ran the teacher (or read the disk) records exactly that, however many times it
        asks again (default taps, probe, feature taps); any later run in this process records memo hits.
        """
        if owner() is data:
            return list(cached.events)
        return [CacheEvent(True, event.teacher_seconds) for event in cached.events]

    def probe(self, teacher_name: str, data: DatasetSplits) -> ProbeResult:
        """The teacher's reference (bench/teacher_outputs/reference.py): a trained run's own head, zero-shot,
        fine-tuned or a linear probe."""
        memo_key = (teacher_name, data.name, data.config)
        if memo_key not in self._probes:
            teacher = self.teacher(teacher_name)
            if has_own_head(teacher):  # a trained run
                outputs = self.teacher_outputs(teacher_name, data, (POOLED,))  # with its LOGITS, one pass
                self._probes[memo_key] = own_head_reference(teacher, data, outputs)
            elif data.config.teacher_reference == "zero-shot":
                outputs = self.teacher_outputs(teacher_name, data, (IMAGE_EMBED,))
                self._probes[memo_key] = zero_shot_reference(teacher, data, outputs)
            elif data.config.teacher_reference == "finetune":
                self._probes[memo_key] = finetune_reference(teacher, data, self.finetuned(teacher_name, data))
            else:
                outputs = self.teacher_outputs(teacher_name, data)
                self._probes[memo_key] = linear_probe(teacher, data, outputs, self.cache)
        return self._probes[memo_key]

    def view_cache(self, labeller: Labeller, data: DatasetSplits, taps: Sequence[str], student_size: int) -> ViewCache:
        """data.teacher_views cached: the K labelled views of every train row (bench/teacher_outputs/views.py),
        read or computed once per process; a later run in this process records the entry as a hit."""
        memo_key = (repr(sorted(labeller.key.items())), data.name, data.config, tuple(sorted(set(taps))), student_size)
        if memo_key not in self._views:
            self._views[memo_key] = view_cache(labeller, data, taps, self.cache, self.device, student_size)
            return self._views[memo_key]
        cached = self._views[memo_key]
        return replace(cached, event=CacheEvent(True, cached.event.teacher_seconds))
