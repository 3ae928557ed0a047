"""Optimizer and schedule knobs: SGD + multistep is torch's SGD + MultiStepLR step by step, warmup ramps, label
smoothing reaches every CE term, and a resumed SGD run equals an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.core.protocol import parse_milestones, protocol_hparams, protocol_problem
from bench.core.registries import METHODS, STUDENTS
from bench.methods.base import MethodContext
from bench.run.optim import make_optimizer, make_scheduler, set_label_smoothing
from bench.run.train import train_student
from bench.students.base import StudentContext
from bench.sweep.checkpoint import Checkpointer
from tests.support.train_data import HPARAMS, tiny_data

SGD = {"lr": 0.05, "weight_decay": 5e-4, "optimizer": "sgd", "momentum": 0.9, "nesterov": True,
       "schedule": "multistep", "milestones": "2,4", "gamma": 0.1}


def tiny_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    generator = torch.Generator().manual_seed(1)
    return model, torch.randn(12, 6, generator=generator), torch.randint(0, 3, (12,), generator=generator)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_sgd_multistep_matches_torch_sgd_and_multisteplr_step_by_step() -> None:
    epochs, per_epoch = 6, 3
    ours, x, y = tiny_problem()
    reference, _, _ = tiny_problem()
    optimizer = make_optimizer(ours.parameters(), SGD)
    scheduler = make_scheduler(optimizer, SGD, epochs, per_epoch)
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    torch_multistep = torch.optim.lr_scheduler.MultiStepLR(torch_sgd, milestones=[2, 4], gamma=0.1)  # per epoch
    lrs = []
    for _epoch in range(epochs):
        for batch in range(per_epoch):
            rows = slice(4 * batch, 4 * batch + 4)
            assert optimizer.param_groups[0]["lr"] == pytest.approx(torch_sgd.param_groups[0]["lr"], rel=1e-12)
            lrs.append(optimizer.param_groups[0]["lr"])
            step(ours, optimizer, x[rows], y[rows])
            step(reference, torch_sgd, x[rows], y[rows])
            scheduler.step()
            for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
        torch_multistep.step()
    assert lrs == pytest.approx([0.05] * 6 + [0.005] * 6 + [0.0005] * 6)
    assert not torch.equal(ours[0].weight, tiny_problem()[0][0].weight)  # it did train


def test_warmup_ramps_linearly_then_follows_the_schedule() -> None:
    model, _, _ = tiny_problem()
    optimizer = make_optimizer(model.parameters(), {**SGD, "warmup_epochs": 1})
    scheduler = make_scheduler(optimizer, {**SGD, "warmup_epochs": 1}, 6, 4)
    lrs = []
    for _ in range(24):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.0125, 0.025, 0.0375, 0.05, 0.05])
    assert lrs[7] == pytest.approx(0.05) and lrs[8] == pytest.approx(0.005) and lrs[16] == pytest.approx(0.0005)
    cosine = {"lr": 1.0, "weight_decay": 0.0, "warmup_epochs": 0.5}
    adamw = make_optimizer(tiny_problem()[0].parameters(), cosine)
    warm_cosine = make_scheduler(adamw, cosine, 2, 4)
    seen = []
    for _ in range(8):
        seen.append(adamw.param_groups[0]["lr"])
        adamw.step()
        warm_cosine.step()
    assert isinstance(adamw, torch.optim.AdamW)
    assert seen[:3] == pytest.approx([0.5 * (1 + torch.cos(torch.tensor(0.0)).item()) / 2,
                                      0.5 * (1 + torch.cos(torch.tensor(torch.pi / 8)).item()),
                                      0.5 * (1 + torch.cos(torch.tensor(2 * torch.pi / 8)).item())])


def test_the_default_is_adamw_and_cosine_annealing_as_before() -> None:
    model, _, _ = tiny_problem()
    optimizer = make_optimizer(model.parameters(), {"lr": 0.01, "weight_decay": 0.0})
    scheduler = make_scheduler(optimizer, {}, 3, 5, total_steps=16)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 16


def test_protocol_knobs_enter_a_spec_only_where_they_change_the_run() -> None:
    assert protocol_hparams({}) == {}
    assert protocol_hparams({"optimizer": "adamw", "momentum": 0.5, "milestones": "3"}) == {}
    assert protocol_hparams({"optimizer": "sgd", "momentum": 0.9, "nesterov": True}) == {"optimizer": "sgd",
                                                                                          "nesterov": True}
    assert protocol_hparams({"schedule": "multistep", "milestones": "3,5", "gamma": 0.1, "label_smoothing": 0.1}) \
        == {"schedule": "multistep", "milestones": "3,5", "label_smoothing": 0.1}
    assert protocol_problem({"schedule": "multistep"}) == "schedule: multistep needs milestones (epochs, e.g. " \
        "'150,180,210')"
    assert protocol_problem({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}) is not None
    assert parse_milestones("150,180,210") == (150, 180, 210)
    for bad in ("3,2", "0", "a,b", "3,3"):
        with pytest.raises(ValueError):
            parse_milestones(bad)


def test_label_smoothing_reaches_the_ce_of_every_part() -> None:
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    context = MethodContext(3, 8, 8)
    for method in (METHODS.get("kd")(context, {}), METHODS.get("combined")(context, {"combine": "kd:1"})):
        teacher = {"logits": torch.randn(6, 3)}
        plain = method({"logits": logits, "embedding": torch.randn(6, 8)}, teacher, labels)["ce"]
        set_label_smoothing(method, 0.2)
        smoothed = method({"logits": logits, "embedding": torch.randn(6, 8)}, teacher, labels)["ce"]
        assert plain == pytest.approx(float(F.cross_entropy(logits, labels)))
        assert smoothed == pytest.approx(float(F.cross_entropy(logits, labels, label_smoothing=0.2)))
        assert abs(float(smoothed) - float(plain)) > 1e-3


class Interrupt(Exception):
    """Stands in for a worker killed after an epoch."""


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("warmup", [0, 1])
def test_a_resumed_sgd_multistep_run_equals_an_uninterrupted_one(tmp_path: Path, warmup: int) -> None:
    hparams = {**HPARAMS, **SGD, "lr": 0.1, "milestones": "2,3", "warmup_epochs": warmup}

    def train(checkpoint: Checkpointer | None, stop_after: int | None = None):  # noqa: ANN202
        torch.manual_seed(123)
        student = STUDENTS.entry("bottleneck").obj(StudentContext(3, 8, 8), hparams)
        method = METHODS.get("kd")(MethodContext(3, 8, student.embed_dim), hparams)

        def on_epoch(record) -> None:  # noqa: ANN001
            if stop_after is not None and record.epoch + 1 == stop_after:
                raise Interrupt

        return train_student(student, method, tiny_data(), hparams, 4, 7, torch.device("cpu"), on_epoch, checkpoint)

    straight = train(None)
    checkpoint = Checkpointer(tmp_path, "sgd", 4)
    with pytest.raises(Interrupt):
        train(checkpoint, stop_after=2)
    resumed = train(checkpoint)
    assert resumed.resumed_from_epoch == 2
    assert [r.train_loss for r in resumed.epochs] == pytest.approx([r.train_loss for r in straight.epochs], abs=0)
    assert resumed.test_acc == straight.test_acc and straight.test_acc > 0.6
