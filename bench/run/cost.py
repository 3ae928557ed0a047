"""A run's deployable model (its parts and preprocessing) and the inference-cost fields of its record: its own and
its teacher's, on the run's device."""

from __future__ import annotations

from torch import nn

from bench.core.names import HEAD, RETRIEVAL
from bench.data.splits import DatasetSplits
from bench.deploy.inference_cost import cost_fields, measure_cost
from bench.deploy.model import HeadPass, ImageNorm, deployable, head_cost, input_shape, is_joint_space
from bench.run.parts import RunParts
from bench.run.workbench import Workbench
from bench.teachers.base import Teacher


def student_cost_fields(bench: Workbench, parts: RunParts, teacher_name: str, data: DatasetSplits,
                        task: str) -> dict[str, float | None]:
    """The trained student's cost as deployed (a head student with its backbone) beside its teacher's.

    A head student's figures are its teacher pass's (memoised: timed once per grid, bench/run/workbench.py) plus
    its head's, timed alone on features of the tap's shape; a standalone student is timed whole.
    """
    teacher_figures = bench.teacher_cost(teacher_name, data, task == RETRIEVAL)
    if parts.kind == HEAD and parts.input_tap is not None:
        teacher_pass, shape = bench.teacher_pass_cost(teacher_name, data, parts.input_tap)
        joint = parts.method if is_joint_space(parts.method) else None
        own = teacher_pass.then(head_cost(HeadPass(parts.student, joint), shape, bench.device))
        return cost_fields(own, teacher_figures, backbone=teacher_pass)
    teacher: Teacher = bench.teacher(teacher_name)
    norm = run_norm(parts, teacher, data)  # the size the deployable resizes to: the student's
    model = deployable(parts.student, parts.method, teacher, parts.kind, parts.input_tap, norm,
                       is_joint_space(parts.method))
    own = measure_cost(model, input_shape(data), bench.device, work_size=norm.size)
    return cost_fields(own, teacher_figures)


def reference_cost_fields(bench: Workbench, teacher_name: str, data: DatasetSplits,
                          task: str) -> dict[str, float | None]:
    """The reference cell is the teacher itself: its figures are its own and its speed-up is 1."""
    teacher = bench.teacher_cost(teacher_name, data, task == RETRIEVAL)
    return cost_fields(teacher, teacher)


def run_norm(parts: RunParts, teacher: Teacher, data: DatasetSplits) -> ImageNorm:
    """The preprocessing the run used: the teacher's for a head student, train-set channel stats otherwise."""
    if parts.input_tap is not None:
        pre = teacher.preprocess.with_size(data.config.image_size)
        return ImageNorm(pre.input_size, pre.mean, pre.std, pre.interpolation)
    mean, std = data.train_channel_stats
    return ImageNorm(data.config.student_image_size or data.native_size, mean, std)


def deployable_for_run(parts: RunParts, teacher: Teacher, data: DatasetSplits) -> nn.Module:
    """`deployable` with the arguments the run used (bench/run/run_spec.py `student_inputs`); a head student of a
    `teacher_reference: finetune` setting takes the fine-tuned teacher (bench/artifacts/store.py)."""
    return deployable(parts.student, parts.method, teacher, parts.kind, parts.input_tap,
                      run_norm(parts, teacher, data), is_joint_space(parts.method))
