"""A run's optimizer and lr schedule from its hparams: AdamW + cosine (the default) or a published protocol
(SGD with momentum, multistep decay at given epochs, linear warmup), stepped once per batch.

The default keeps the exact objects training always used (AdamW, CosineAnnealingLR over every step), so a run
without the protocol knobs trains and resumes as before. Multistep without warmup is torch's MultiStepLR with
each milestone epoch turned into its first step; a warmup multiplies the schedule's closed form by
min(1, (step + 1) / warmup_steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from bench.core.protocol import parse_milestones, protocol
from bench.methods.base import Method

Scheduler = torch.optim.lr_scheduler.LRScheduler


def make_optimizer(parameters: Iterable[torch.nn.Parameter], hparams: Mapping[str, object]) -> torch.optim.Optimizer:
    """AdamW (lr, weight_decay) or SGD (lr, momentum, nesterov, weight_decay), as the hparams say."""
    values = protocol(hparams)
    lr, weight_decay = float(hparams["lr"]), float(hparams["weight_decay"])  # type: ignore[arg-type]
    if values["optimizer"] == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=float(values["momentum"]),
                               nesterov=bool(values["nesterov"]), weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, hparams: Mapping[str, object], epochs: int,
                   steps_per_epoch: int, total_steps: int | None = None) -> Scheduler:
    """The lr schedule over `epochs` x `steps_per_epoch` batches (scheduler.step() after every batch).

    `total_steps` is the cosine's length when it is not epochs x steps_per_epoch (the trainer has always counted
    a dropped last batch of one sample there; kept, so default runs train exactly as before).
    """
    values = protocol(hparams)
    total = max(1, total_steps if total_steps is not None else epochs * steps_per_epoch)
    milestones = [epoch * steps_per_epoch for epoch in parse_milestones(str(values["milestones"]))]
    gamma = float(values["gamma"])  # type: ignore[arg-type]
    warmup = round(float(values["warmup_epochs"]) * steps_per_epoch)  # type: ignore[arg-type]
    schedule = values["schedule"]
    if not warmup:
        if schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        if schedule == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)

    def factor(step: int) -> float:
        """lr / base lr at this step: warmup ramp times the schedule's closed form."""
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if schedule == "cosine":
            return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if schedule == "multistep":
            return ramp * gamma ** sum(step >= milestone for milestone in milestones)
        return ramp

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_label_smoothing(method: Method, value: float) -> None:
    """The run's label smoothing on the method's CE term, and on its parts' (`combined` computes CE in its parts)."""
    for part in method.modules():
        if isinstance(part, Method):
            part.label_smoothing = value
