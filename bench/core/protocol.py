"""Optimizer and schedule knobs of student training (torch-free): published protocols (SGD + multistep) beside
today's default (AdamW + cosine).

These knobs enter a spec's hparams only where they change the run: away from their default, and only under the
optimizer or schedule that reads them (momentum and nesterov under sgd; milestones and gamma under multistep).
So every spec key from before these knobs existed is unchanged, and an unused knob never splits a setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.core.knobs import Knob, defaults_of

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "multistep", "constant")


def parse_milestones(value: str) -> tuple[int, ...]:
    """'150,180,210' -> (150, 180, 210); '' -> (). ValueError unless strictly increasing integers >= 1."""
    if not value.strip():
        return ()
    try:
        epochs = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ValueError("is not a comma-separated list of epochs") from None
    if any(epoch < 1 for epoch in epochs) or list(epochs) != sorted(set(epochs)):
        raise ValueError("must list strictly increasing epochs >= 1")
    return epochs


def _milestones_problem(value: Any) -> str | None:
    if not isinstance(value, str):  # a YAML list would sweep single milestones: say how to write several
        return "is not a quoted string of epochs; write milestones: '150,180,210' (a YAML list sweeps values)"
    try:
        parse_milestones(value)
    except ValueError as error:
        return f"{error} (e.g. '150,180,210')"
    return None


PROTOCOL_KNOBS: dict[str, Knob] = {  # read by bench/run/optim.py
    "optimizer": Knob("adamw", str, choices=OPTIMIZERS, help="adamw (default) or sgd"),
    "momentum": Knob(0.9, float, ge=0, lt=1, help="sgd momentum"),
    "nesterov": Knob(False, bool, help="sgd: Nesterov momentum (needs momentum > 0)"),
    "schedule": Knob("cosine", str, choices=SCHEDULES, help="lr schedule over the run, stepped every batch"),
    "milestones": Knob("", object, check=_milestones_problem,
                       help="multistep: epochs at which lr is multiplied by gamma, e.g. '150,180,210'"),
    "gamma": Knob(0.1, float, gt=0, le=1, help="multistep: lr factor at each milestone"),
    "warmup_epochs": Knob(0.0, float, ge=0, le=10000, help="linear lr warmup from lr/steps to lr over these epochs"),
    "label_smoothing": Knob(0.0, float, ge=0, lt=1, help="label smoothing of every method's CE term"),
}
PROTOCOL_DEFAULTS: dict[str, Any] = defaults_of(PROTOCOL_KNOBS)
_READ_ONLY_UNDER = {"momentum": ("optimizer", "sgd"), "nesterov": ("optimizer", "sgd"),
                    "milestones": ("schedule", "multistep"), "gamma": ("schedule", "multistep")}


def protocol(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Every protocol knob's value for a run: the hparams' where given, else the default."""
    return {name: hparams.get(name, default) for name, default in PROTOCOL_DEFAULTS.items()}


def protocol_hparams(chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol knobs of `chosen` that belong in a spec: set away from their default, and read by the run."""
    values = protocol(chosen)
    kept = {}
    for name, value in values.items():
        owner = _READ_ONLY_UNDER.get(name)
        if name in chosen and value != PROTOCOL_DEFAULTS[name] and (owner is None or values[owner[0]] == owner[1]):
            kept[name] = value
    return kept


def protocol_problem(hparams: Mapping[str, Any]) -> str | None:
    """What makes this combination unrunnable (the knobs are each valid alone), or None."""
    values = protocol(hparams)
    if values["schedule"] == "multistep" and not parse_milestones(str(values["milestones"])):
        return "schedule: multistep needs milestones (epochs, e.g. '150,180,210')"
    if values["optimizer"] == "sgd" and values["nesterov"] and not values["momentum"]:
        return "nesterov: true needs momentum > 0"
    return None
