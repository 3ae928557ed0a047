"""Per-process context of a sweep: device, loaded teachers, datasets, cached outputs and probes."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from bench.cache import CacheEvent, FeatureCache
from bench.data import DataConfig, DatasetSplits, load_dataset
from bench.errors import BenchError
from bench.features import cached_teacher_outputs, split_fingerprint
from bench.inference_cost import InferenceCost, measure_cost
from bench.names import FINETUNE_REFERENCE, FINETUNE_TARGETS, SPLITS
from bench.probe import FOLD_SEED, OOF_FOLDS, PROBE_VERSION, ProbeResult, fit_linear_probe
from bench.registries import TEACHERS
from bench.run.finetune import FinetuneResult, finetune_config, finetune_teacher, labeled_rows
from bench.taps import IMAGE_EMBED, POOLED
from bench.teachers.base import Teacher

FEATURE_TAPS = (POOLED,)
PROBE_HEAD = ("mean", "std", "weight", "bias")  # the chosen probe, kept in its cache entry for its artifact


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: no CUDA device is visible; use --device auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device {name!r} is not a device; use auto, cpu or cuda[:N]") from None


@dataclass
class TeacherOutputs:
    """Teacher outputs (tap -> tensor) per split and the cache events that produced them."""

    features: dict[str, dict[str, torch.Tensor]]
    events: list[CacheEvent] = field(default_factory=list)

    @property
    def teacher_seconds(self) -> float:
        return sum(event.teacher_seconds for event in self.events)


@dataclass(frozen=True)
class RunContext:
    """Where things live for a sweep."""

    cache_dir: Path | None = None
    data_root: Path | None = None
    device: str = "auto"
    allow_download: bool = False  # teachers may fetch weights, torchvision data (--allow-download; never in tests)
    skip_bad: bool = False  # leave corrupt images out, for every dataset (--skip-bad)


class Workbench:
    """Loads each teacher and dataset once and serves cached teacher outputs and probes."""

    def __init__(self, context: RunContext, weights: dict[str, str] | None = None) -> None:
        self.context = context
        self.device = resolve_device(context.device)
        self.cache = FeatureCache(context.cache_dir)
        self.weights = dict(weights or {})
        self._teachers: dict[str, Teacher] = {}
        self._outputs: dict[tuple, tuple[TeacherOutputs, weakref.ref]] = {}  # -> outputs, the data that asked first
        self._probes: dict[tuple, ProbeResult] = {}
        self._finetuned: dict[tuple, FinetuneResult] = {}
        self._teacher_costs: dict[tuple, InferenceCost] = {}

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
        taps = tuple(sorted(set(taps)))
        memo_key = (teacher_name, data.name, data.config, taps)
        if memo_key in self._outputs:
            cached, owner = self._outputs[memo_key]
            return TeacherOutputs(cached.features, self._memo_events(cached, owner, data))
        if data.config.teacher_reference == "finetune":
            features, events = self._finetuned_outputs(teacher_name, data, taps)
        else:
            teacher = self.teacher(teacher_name)
            features, events = {}, []
            for split in SPLITS:
                features[split], event = cached_teacher_outputs(
                    teacher, data, split, taps, self.cache, self.device
                )
                events.append(event)
        self._outputs[memo_key] = (TeacherOutputs(features, events), weakref.ref(data))
        return self._outputs[memo_key][0]

    def teacher_cost(self, teacher_name: str, data: DatasetSplits, retrieval: bool) -> InferenceCost:
        """The teacher's inference cost (bench/deploy.py `teacher_deployable`), measured once per teacher, input
        size, head shape and device in this process: a grid pays for it once."""
        from bench.deploy import input_shape, teacher_deployable

        teacher = self.teacher(teacher_name)
        size = teacher.preprocess.with_size(data.config.image_size).input_size
        memo_key = (teacher_name, input_shape(data), size, retrieval or data.num_classes, str(self.device))
        if memo_key not in self._teacher_costs:
            model = teacher_deployable(teacher, data, retrieval)
            self._teacher_costs[memo_key] = measure_cost(model, input_shape(data), self.device, work_size=size)
        return self._teacher_costs[memo_key]

    def finetuned(self, teacher_name: str, data: DatasetSplits) -> FinetuneResult:
        """The teacher fine-tuned on the labeled train rows (data.teacher_reference: finetune), cached on disk."""
        memo_key = (teacher_name, data.name, data.config)
        if memo_key not in self._finetuned:
            self._finetuned[memo_key] = finetune_teacher(self.teacher(teacher_name), data,
                                                         finetune_config(data.config), self.cache, self.device)
        return self._finetuned[memo_key]

    def _finetuned_outputs(self, teacher_name: str, data: DatasetSplits,
                           taps: Sequence[str]) -> tuple[dict[str, dict[str, torch.Tensor]], list[CacheEvent]]:
        """The fine-tuned teacher's pooled features replace the frozen pass; no other tap is served from it."""
        if set(taps) - {POOLED}:
            raise BenchError(f"data.teacher_reference 'finetune' serves only the fine-tuned {POOLED!r} features "
                             f"and logits; {sorted(set(taps) - {POOLED})} are not kept: pick another method")
        tuned = self.finetuned(teacher_name, data)
        return {split: {POOLED: tuned.pooled[split]} for split in SPLITS}, [CacheEvent(tuned.hit, tuned.seconds)]

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
        """The teacher's linear probe (cached on disk beside its features)."""
        memo_key = (teacher_name, data.name, data.config)
        if memo_key not in self._probes:
            if data.config.teacher_reference == "zero-shot":
                self._probes[memo_key] = self._zero_shot_reference(teacher_name, data)
            elif data.config.teacher_reference == "finetune":
                self._probes[memo_key] = self._finetune_reference(teacher_name, data)
            else:
                self._probes[memo_key] = self._load_or_fit_probe(teacher_name, data)
        return self._probes[memo_key]

    def _zero_shot_reference(self, teacher_name: str, data: DatasetSplits) -> ProbeResult:
        """Class logits from the teacher's own text encoder: KD targets and a reference without a probe."""
        from bench.probe import accuracy
        from bench.teachers.zero_shot import zero_shot_head

        teacher = self.teacher(teacher_name)
        outputs = self.teacher_outputs(teacher_name, data, (IMAGE_EMBED,))
        with torch.inference_mode():
            head = zero_shot_head(teacher, data.class_names)
        logits = {split: head.logits(outputs.features[split][IMAGE_EMBED]) for split in SPLITS}
        labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
        return ProbeResult(
            weight_decay=0.0, val_acc=accuracy(logits["val"], labels["val"]),
            test_acc=accuracy(logits["test"], labels["test"]), logits=logits, reference=head.reference,
            head_params=head.class_embeds.numel(), kd_targets="zero-shot",
        )

    def _finetune_reference(self, teacher_name: str, data: DatasetSplits) -> ProbeResult:
        """The fine-tuned teacher's head: its logits on every split are the KD targets."""
        tuned = self.finetuned(teacher_name, data)
        return ProbeResult(weight_decay=0.0, val_acc=tuned.val_acc, test_acc=tuned.test_acc, logits=tuned.logits,
                           reference=FINETUNE_REFERENCE, head_params=self.teacher(teacher_name).embed_dim
                           * data.num_classes + data.num_classes, kd_targets=FINETUNE_TARGETS)

    def _load_or_fit_probe(self, teacher_name: str, data: DatasetSplits) -> ProbeResult:
        """Fit (or load) the probe; its key names the fit version and the kind of train logits (KD targets)."""
        teacher = self.teacher(teacher_name)
        outputs = self.teacher_outputs(teacher_name, data)
        targets = data.config.kd_targets
        parts = {
            "kind": "linear-probe",
            "probe_version": PROBE_VERSION,
            "targets": targets if targets == "in-sample" else f"oof-{OOF_FOLDS}-seed{FOLD_SEED}",
            "teacher": teacher.name,
            "weights": teacher.fingerprint,
            "dataset": data.name,
            "preprocess": teacher.preprocess.with_size(data.config.image_size).as_dict(),
            "splits": {split: split_fingerprint(data.split(split)) for split in SPLITS},
        }
        if data.config.labeled_limit is not None:  # older keys hold: the field is in the key only when set
            parts["labeled"] = [data.config.labeled_limit, data.config.split_seed]

        def fit() -> dict[str, torch.Tensor]:
            features = {split: outputs.features[split][POOLED] for split in SPLITS}
            labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
            result = _fit_on_labeled(features, labels, data, targets)
            folds = int(result.kd_targets.rsplit("-", 1)[1]) if result.kd_targets.startswith("probe-oof-") else 0
            return {
                **{f"logits.{split}": result.logits[split] for split in SPLITS},
                "weight_decay": torch.tensor(result.weight_decay, dtype=torch.float64),
                "val_acc": torch.tensor(result.val_acc),
                "test_acc": torch.tensor(result.test_acc),
                "oof_folds": torch.tensor(folds),
                **{f"head.{name}": value for name, value in (result.head or {}).items()},
            }

        tensors, _ = self.cache.get_or_compute(parts, fit, lambda cached: _probe_problem(cached, data))
        folds = int(tensors["oof_folds"])
        return ProbeResult(
            weight_decay=float(tensors["weight_decay"]),
            val_acc=float(tensors["val_acc"]),
            test_acc=float(tensors["test_acc"]),
            logits={split: tensors[f"logits.{split}"] for split in SPLITS},
            kd_targets=f"probe-oof-{folds}" if folds else "probe-in-sample",
            head={name: tensors[f"head.{name}"] for name in PROBE_HEAD},
        )


def _fit_on_labeled(features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], data: DatasetSplits,
                    targets: str) -> ProbeResult:
    """The probe fit on the labeled train rows only; the transfer rows' logits come from that probe."""
    rows = labeled_rows(data.train.labels, data.config.labeled_limit, data.config.split_seed)
    if len(rows) == len(data.train):
        return fit_linear_probe(features, labels, data.num_classes, targets=targets)
    transfer = np.setdiff1d(np.arange(len(data.train)), rows)
    split_features = {**features, "train": features["train"][rows], "transfer": features["train"][transfer]}
    result = fit_linear_probe(split_features, {**labels, "train": labels["train"][rows]}, data.num_classes,
                              targets=targets)
    train = torch.empty(len(data.train), data.num_classes)
    train[torch.from_numpy(rows)] = result.logits["train"]
    train[torch.from_numpy(transfer)] = result.logits.pop("transfer")
    return replace(result, logits={**result.logits, "train": train})


def _probe_problem(tensors: dict[str, torch.Tensor], data: DatasetSplits) -> str | None:
    """Why cached probe values cannot be right (missing, non-finite, an accuracy outside [0, 1]), else None."""
    names = [f"logits.{split}" for split in SPLITS] + ["weight_decay", "val_acc", "test_acc", "oof_folds"]
    names += [f"head.{name}" for name in PROBE_HEAD]  # a probe cached before issue 14 kept no head: refit once
    if any(name not in tensors for name in names):
        return "lack some probe values"
    if not all(bool(torch.isfinite(tensors[name]).all()) for name in names):
        return "hold non-finite probe values"
    if not all(0.0 <= float(tensors[name]) <= 1.0 for name in ("val_acc", "test_acc")):
        return "hold a probe accuracy outside [0, 1]"
    if any(len(tensors[f"logits.{split}"]) != len(data.split(split)) for split in SPLITS):
        return "hold probe logits for another split size"
    return None
