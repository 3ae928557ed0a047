"""What a done run leaves behind for its artifact: the tensors inference needs and what they are.

A student run keeps its trained student (the weights its test metric was computed with: the last epoch's) and,
for a joint-space method, the method's projection; a reference cell keeps its head (the linear probe, the
zero-shot class embeddings, the fine-tuned encoder tensors and head; a retrieval reference is the teacher alone).
bench/artifacts/store.py writes it as safetensors; nothing here touches files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.core.names import FINETUNE_REFERENCE
from bench.core.spec import ExperimentSpec
from bench.data.splits import DatasetSplits
from bench.run.parts import RunParts

STUDENT, PROBE, ZERO_SHOT, FINETUNE, TEACHER = "student", "probe", "zero-shot", "finetune", "teacher"
STUDENT_PREFIX, METHOD_PREFIX = "student.", "method."


@dataclass(frozen=True)
class Kept:
    """A done run's inference tensors (CPU copies) and the safetensors metadata that says what they are."""

    kind: str  # STUDENT, or the reference cell's PROBE / ZERO_SHOT / FINETUNE / TEACHER
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


Keep = Callable[[Kept], None]  # run_spec hands a done run's Kept to this (the sweep writes the artifact)


def cpu_copies(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state as owned contiguous CPU tensors (tied weights become separate copies: safetensors)."""
    return {prefix + name: value.detach().to("cpu", copy=True).contiguous() for name, value in
            module.state_dict().items()}


def input_norm(parts: RunParts, data: DatasetSplits) -> dict[str, object] | None:
    """A standalone student's input: size and per-channel mean/std of train (as run_spec's student_inputs)."""
    if parts.input_tap is not None:
        return None
    mean, std = data.train_channel_stats
    return {"size": data.config.student_image_size or data.native_size, "mean": list(mean), "std": list(std)}


def _metadata(spec: ExperimentSpec, kind: str, **extra: object) -> dict[str, str]:
    spec_json = json.dumps(spec.to_dict(), sort_keys=True)  # ExperimentSpec.from_dict reads it back
    return {"format": "distill-bench-artifact/1", "kind": kind, "spec": spec_json, "spec_key": spec.key,
            **{name: json.dumps(value) for name, value in extra.items()}}


def student_kept(spec: ExperimentSpec, parts: RunParts, data: DatasetSplits, joint_space: bool) -> Kept:
    """The trained student (and a joint-space method's projection: it is part of the model at inference)."""
    tensors = cpu_copies(STUDENT_PREFIX, parts.student)
    if joint_space:
        tensors.update(cpu_copies(METHOD_PREFIX, parts.method))
    return Kept(STUDENT, tensors, _metadata(spec, STUDENT, student_kind=parts.kind, input_tap=parts.input_tap,
                                            norm=input_norm(parts, data), joint_space=joint_space))


def reference_kept(spec: ExperimentSpec, task: object) -> Kept:
    """A reference cell's head: fine-tuned tensors, zero-shot class embeddings, the probe, or nothing (retrieval)."""
    from bench.run.classification import ClassificationTask

    if not isinstance(task, ClassificationTask):
        return Kept(TEACHER, {}, _metadata(spec, TEACHER))
    if task.finetune is not None and task.probe.reference == FINETUNE_REFERENCE:
        state = task.finetune.state
        tensors = {name: value.detach().to("cpu", copy=True).contiguous() for name, value in state.items()}
        return Kept(FINETUNE, tensors, _metadata(spec, FINETUNE))
    if task.probe.head_params == 0:  # a trained run's own head: the teacher is its run's artifact already
        return Kept(TEACHER, {}, _metadata(spec, TEACHER))
    if task.probe.kd_targets == "zero-shot":
        from bench.teachers.zero_shot import zero_shot_head

        with torch.inference_mode():
            head = zero_shot_head(task.teacher, task.data.class_names)
        tensors = {"class_embeds": head.class_embeds.clone().contiguous(),
                   "scale": torch.tensor(float(head.scale)), "bias": torch.tensor(float(head.bias))}
        return Kept(ZERO_SHOT, tensors, _metadata(spec, ZERO_SHOT))
    if task.probe.head is None:
        raise AssertionError("a linear probe without its head: bench/teacher_outputs/reference.py keeps it")  # a bug
    tensors = {name: value.clone().contiguous() for name, value in task.probe.head.items()}
    return Kept(PROBE, tensors, _metadata(spec, PROBE))
