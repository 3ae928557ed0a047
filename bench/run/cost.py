"""The inference-cost fields of a run's record: its deployable model's and its teacher's, on the run's device."""

from __future__ import annotations

from bench.data import DatasetSplits
from bench.deploy import deployable, input_shape, is_joint_space, run_norm
from bench.inference_cost import cost_fields, measure_cost
from bench.names import RETRIEVAL
from bench.run.parts import RunParts
from bench.run.workbench import Workbench
from bench.teachers.base import Teacher


def student_cost_fields(bench: Workbench, parts: RunParts, teacher_name: str, data: DatasetSplits,
                        task: str) -> dict[str, float]:
    """The trained student's cost as deployed (a head student with its backbone) beside its teacher's."""
    teacher: Teacher = bench.teacher(teacher_name)
    norm = run_norm(parts, teacher, data)  # the size the deployable resizes to: the student's, or its teacher's
    model = deployable(parts.student, parts.method, teacher, parts.kind, parts.input_tap, norm,
                       is_joint_space(parts.method))
    own = measure_cost(model, input_shape(data), bench.device, work_size=norm.size)
    return cost_fields(own, bench.teacher_cost(teacher_name, data, task == RETRIEVAL))


def reference_cost_fields(bench: Workbench, teacher_name: str, data: DatasetSplits, task: str) -> dict[str, float]:
    """The reference cell is the teacher itself: its figures are its own and its speed-up is 1."""
    teacher = bench.teacher_cost(teacher_name, data, task == RETRIEVAL)
    return cost_fields(teacher, teacher)
