"""Which grid cells train together in one stacked model (--bundle auto): `bundle_key(spec)`, None for cells that run
alone.

Cells bundle when their models differ only in values, not in shapes or data: the same teacher, dataset, data
config, head student with a stacked implementation (bench/run/stacked.py) and its shape knobs, method (one without
parameters or per-sample state), epochs and batch size, AdamW, fixed teacher views without augmentation and fp32.
Seed, lr, weight decay, temperature, alpha, dropout, label smoothing and the schedule may differ: each cell keeps
its own initialisation, data order, dropout masks, loss and lr sequence.
"""

from __future__ import annotations

import json

from bench.core.names import REFERENCE_METHODS
from bench.core.protocol import protocol
from bench.core.registries import STUDENTS
from bench.core.spec import ExperimentSpec

MAX_BUNDLE = 16  # cells per bundle at most
BUNDLE_MODES = ("auto", "off")
SHAPE_KNOBS: dict[str, tuple[str, ...]] = {  # student -> its shape knobs (their defaults: the student's declaration)
    "bottleneck": ("hidden_dim", "bottleneck_dim"),
    "projection": ("embed_dim",),
}
STATELESS_METHODS = frozenset({"scratch", "kd"})  # no parameters, no per-sample state (tests/run/test_bundle.py)


def bundle_key(spec: ExperimentSpec) -> str | None:
    """The key shared by every cell that can train in one bundle with this one; None: it runs alone."""
    if spec.method in REFERENCE_METHODS or spec.student not in SHAPE_KNOBS or spec.method not in STATELESS_METHODS:
        return None
    data, hparams = spec.data_dict, spec.hparams_dict
    if (data.get("teacher_views", "fixed") != "fixed" or data.get("augment", "none") != "none"
            or data.get("precision", "fp32") != "fp32" or data.get("compile", False)):
        return None
    if protocol(hparams)["optimizer"] != "adamw":
        return None
    defaults = STUDENTS.entry(spec.student).obj.defaults
    shapes = {name: int(hparams.get(name, defaults[name])) for name in SHAPE_KNOBS[spec.student]}
    shared = {"teacher": spec.teacher, "dataset": spec.dataset, "data": data, "student": spec.student,
              "shapes": shapes, "method": spec.method, "epochs": spec.epochs,
              "batch_size": hparams.get("batch_size")}
    return json.dumps(shared, sort_keys=True, separators=(",", ":"), default=str)
