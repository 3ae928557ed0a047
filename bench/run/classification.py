"""Classification runs: students learn the labels (and the probe's logits); scored by top-1 and top-5 accuracy.

The reference is the teacher's linear probe, its zero-shot head (`data.teacher_reference: zero-shot`) or the
teacher fine-tuned on the labeled train rows (`finetune`); its logits are the KD targets. `data.labeled_limit`
keeps the labels of that many train rows; the rest are a transfer set seen through the teacher only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from bench.core.names import PROBE_REFERENCE, SPLITS, UNLABELED
from bench.core.spec import ExperimentSpec
from bench.core.taps import LOGITS
from bench.data.splits import DatasetSplits
from bench.run.loader import select_rows
from bench.run.metrics import topk_accuracy
from bench.run.parts import RunParts
from bench.run.task import Inputs
from bench.run.train import TrainData, TrainResult, state_size_mb
from bench.run.workbench import Workbench
from bench.teacher_outputs.features import TeacherOutputs
from bench.teacher_outputs.finetune import FinetuneResult, labeled_rows
from bench.teacher_outputs.probe import ProbeResult
from bench.teachers.base import Teacher


@dataclass(frozen=True)
class ClassificationTask:
    """A classification run's task part: the teacher's probe (or zero-shot head) is its reference."""

    data: DatasetSplits
    teacher: Teacher
    outputs: TeacherOutputs
    probe: ProbeResult
    finetune: FinetuneResult | None = None  # data.teacher_reference finetune: the fine-tuned teacher

    @classmethod
    def prepare(cls, bench: Workbench, spec: ExperimentSpec, data: DatasetSplits,
                teacher: Teacher) -> ClassificationTask:
        """The teacher's pooled outputs and its probe (or fine-tuned head), all cached."""
        outputs = bench.teacher_outputs(spec.teacher, data)
        finetune = bench.finetuned(spec.teacher, data) if data.config.teacher_reference == "finetune" else None
        return cls(data, teacher, outputs, bench.probe(spec.teacher, data), finetune)

    @property
    def reference(self) -> str:
        return self.probe.reference

    def reference_fields(self) -> dict[str, Any]:
        """The probe cell: the probe's accuracies, its size on top of the teacher's, and its settings."""
        probe, data, teacher = self.probe, self.data, self.teacher
        linear_params = teacher.embed_dim * data.num_classes + data.num_classes
        probe_params = probe.head_params if probe.head_params is not None else linear_params
        probe_mb = probe_params * 4 / 1e6
        settings = {"weight_decay": probe.weight_decay} if probe.reference == PROBE_REFERENCE else {}
        return {
            "test_acc": probe.test_acc, "val_acc": probe.val_acc, "teacher_acc": probe.test_acc,
            "pct_of_teacher": 100.0, "params": probe_params, "method_params": 0, "size_mb": probe_mb,
            "inference_params": teacher.num_params() + probe_params,
            "inference_size_mb": state_size_mb(teacher) + probe_mb, "hparams": settings,
            "test_top5": topk_accuracy(probe.logits["test"], torch.from_numpy(data.test.labels), 5),
            "kd_targets": probe.kd_targets,
            **(self._finetune_fields(probe_params, probe_mb) if self.finetune is not None else {}),
        }

    def _finetune_fields(self, head_params: int, head_mb: float) -> dict[str, Any]:
        """The fine-tuned teacher is the whole model: its size, epoch time and the chosen settings."""
        tuned, teacher, config = self.finetune, self.teacher, self.data.config
        assert tuned is not None
        params, size_mb = teacher.num_params() + head_params, state_size_mb(teacher) + head_mb
        return {"params": params, "size_mb": size_mb, "inference_params": params, "inference_size_mb": size_mb,
                "epoch_seconds": tuned.epoch_seconds,
                "hparams": {"lr": tuned.lr, "epochs": tuned.epochs, "max_epochs": config.finetune_epochs,
                            "unfreeze": config.finetune_unfreeze, "train_acc": tuned.train_acc}}

    def train_data(self, parts: RunParts, outputs: TeacherOutputs, inputs: Inputs, evaluate_test: bool) -> TrainData:
        """Every split's inputs and labels (test left out of search trials); teacher taps and probe logits."""
        available = {LOGITS: self.probe.logits["train"], **outputs.features["train"]}
        splits = SPLITS if evaluate_test else tuple(split for split in SPLITS if split != "test")
        data = TrainData(
            inputs={split: inputs[split] for split in splits},
            labels={split: torch.from_numpy(self.data.split(split).labels) for split in splits},
            teacher_train={name: available[name] for name in parts.teacher_targets},
        )
        if self.data.config.budget == "steps":  # every method: the steps of a pass over the whole train split
            data = replace(data, epoch_rows=len(self.data.train))
        return self._few_labels(data)

    def _few_labels(self, data: TrainData) -> TrainData:
        """data.labeled_limit: rows outside the labeled ones get label -1 (no CE reads it); a method that
        reads no teacher output gains nothing from them, so it trains on the labeled rows only."""
        config = self.data.config
        rows = labeled_rows(self.data.train.labels, config.labeled_limit, config.label_seed())
        if len(rows) == len(self.data.train):
            return data
        if not data.teacher_train:
            index = torch.from_numpy(rows)
            return replace(data, inputs={**data.inputs, "train": select_rows(data.inputs["train"], index)},
                           labels={**data.labels, "train": data.labels["train"][index]})
        labels = torch.full_like(data.labels["train"], UNLABELED)
        labels[torch.from_numpy(rows)] = data.labels["train"][torch.from_numpy(rows)]
        return replace(data, labels={**data.labels, "train": labels})

    def val_score(self, parts: RunParts, inputs: Inputs) -> Callable[[], float] | None:
        return None

    def result_fields(self, parts: RunParts, inputs: Inputs, result: TrainResult,
                      evaluate_test: bool) -> dict[str, Any]:
        """Accuracies from training, the probe's test accuracy and which probe logits KD read."""
        teacher_acc = self.probe.test_acc
        return {
            "test_acc": result.test_acc, "val_acc": result.val_acc, "test_top5": result.test_top5,
            "teacher_acc": teacher_acc if evaluate_test else None,
            "pct_of_teacher": 100.0 * result.test_acc / teacher_acc if result.test_acc is not None and teacher_acc
            else None,
            "kd_targets": self.probe.kd_targets if LOGITS in parts.teacher_targets else None,  # None: no logits read
        }
