"""The teacher's reference on a dataset: a linear probe on its cached features (fit on the labelled train rows,
out-of-fold train logits), its zero-shot head, its fine-tune, or a trained run's own head; each gives the reference
accuracy and the KD logits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from bench.core.names import FINETUNE_REFERENCE, FINETUNE_TARGETS, SPLITS
from bench.core.taps import IMAGE_EMBED, LOGITS, POOLED
from bench.data.splits import DatasetSplits
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.features import TeacherOutputs, split_fingerprint
from bench.teacher_outputs.finetune import FinetuneResult, labeled_rows
from bench.teacher_outputs.probe import FOLD_SEED, OOF_FOLDS, PROBE_VERSION, ProbeResult, fit_linear_probe
from bench.teachers.base import Teacher

OWN_HEAD_REFERENCE = "trained run's own head (no probe)"  # runs.teacher_reference of a trained-run teacher
OWN_HEAD_TARGETS = "own-head-in-sample"  # runs.kd_targets: the trained teacher's own logits on its train rows
PROBE_HEAD = ("mean", "std", "weight", "bias")  # the chosen probe, kept in its cache entry for its artifact


def zero_shot_reference(teacher: Teacher, data: DatasetSplits, outputs: TeacherOutputs) -> ProbeResult:
    """Class logits from the teacher's own text encoder (on its IMAGE_EMBED outputs): KD targets and a reference
    without a probe."""
    from bench.teacher_outputs.probe import accuracy
    from bench.teachers.zero_shot import zero_shot_head

    with torch.inference_mode():
        head = zero_shot_head(teacher, data.class_names)
    logits = {split: head.logits(outputs.features[split][IMAGE_EMBED]) for split in SPLITS}
    labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
    return ProbeResult(
        weight_decay=0.0, val_acc=accuracy(logits["val"], labels["val"]),
        test_acc=accuracy(logits["test"], labels["test"]), logits=logits, reference=head.reference,
        head_params=head.class_embeds.numel(), kd_targets="zero-shot",
    )


def own_head_reference(teacher: Teacher, data: DatasetSplits, outputs: TeacherOutputs) -> ProbeResult:
    """A trained-run teacher (bench/teachers/trained_run.py): its own LOGITS on every split are the KD targets and
    its accuracy the reference; no probe is fit (the train logits are in-sample, as in RepDistiller's protocol)."""
    from bench.core.errors import BenchError
    from bench.teacher_outputs.probe import accuracy

    classes = int(getattr(teacher, "num_classes", 0))
    if classes != data.num_classes:
        raise BenchError(f"teacher {teacher.name!r} was trained on {classes} classes but {data.name} has "
                         f"{data.num_classes}; a trained run teaches its own dataset")
    logits = {split: outputs.features[split][LOGITS] for split in SPLITS}
    labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
    return ProbeResult(weight_decay=0.0, val_acc=accuracy(logits["val"], labels["val"]),
                       test_acc=accuracy(logits["test"], labels["test"]), logits=logits, reference=OWN_HEAD_REFERENCE,
                       head_params=0, kd_targets=OWN_HEAD_TARGETS)


def finetune_reference(teacher: Teacher, data: DatasetSplits, tuned: FinetuneResult) -> ProbeResult:
    """The fine-tuned teacher's head: its logits on every split are the KD targets."""
    return ProbeResult(weight_decay=0.0, val_acc=tuned.val_acc, test_acc=tuned.test_acc, logits=tuned.logits,
                       reference=FINETUNE_REFERENCE, head_params=teacher.embed_dim * data.num_classes
                       + data.num_classes, kd_targets=FINETUNE_TARGETS)


def linear_probe(teacher: Teacher, data: DatasetSplits, outputs: TeacherOutputs, cache: FeatureCache) -> ProbeResult:
    """Fit (or load) the probe on the POOLED outputs; its key names the fit version and the kind of train logits."""
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
        parts["labeled"] = [data.config.labeled_limit, data.config.label_seed()]

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

    tensors, _ = cache.get_or_compute(parts, fit, lambda cached: _probe_problem(cached, data))
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
    rows = labeled_rows(data.train.labels, data.config.labeled_limit, data.config.label_seed())
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
