"""Epoch checkpoints: atomic files, weights_only loading, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.checkpoint import Checkpointer
from bench.train import TrainData, train_student
from methods import METHODS
from methods.base import MethodContext
from students import STUDENTS
from students.base import StudentContext

HPARAMS = {"lr": 3e-2, "weight_decay": 1e-4, "batch_size": 16, "alpha": 0.5, "temperature": 2.0, "hidden": 16}


class Interrupt(Exception):
    """Stands in for a worker killed after an epoch."""


def tiny_data() -> TrainData:
    """Three noisy clusters of 'teacher features' with teacher logits: a head student can fit them."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=generator) * 1.5
    splits = {}
    for split, n in (("train", 90), ("val", 30), ("test", 30)):
        labels = torch.arange(n) % 3
        splits[split] = (centers[labels] + torch.randn(n, 8, generator=generator), labels)
    logits = 3.0 * torch.nn.functional.one_hot(splits["train"][1], 3).float()
    return TrainData(inputs={s: x for s, (x, _) in splits.items()}, labels={s: y for s, (_, y) in splits.items()},
                     teacher_train={"logits": logits})


def train(checkpoint: Checkpointer | None, stop_after: int | None = None):  # noqa: ANN201
    torch.manual_seed(123)  # different init noise in each call unless the seed inside wins
    student = STUDENTS.entry("bottleneck").obj(StudentContext(3, 8, 8), HPARAMS)
    method = METHODS.get("kd")(MethodContext(3, 8, student.embed_dim), HPARAMS)

    def on_epoch(record) -> None:  # noqa: ANN001
        if stop_after is not None and record.epoch + 1 == stop_after:
            raise Interrupt

    return train_student(student, method, tiny_data(), HPARAMS, 5, 7, torch.device("cpu"), on_epoch, checkpoint)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = train(None)
    checkpoint = Checkpointer(tmp_path, "spec123")
    with pytest.raises(Interrupt):
        train(checkpoint, stop_after=2)
    assert checkpoint.saved_epoch() == 2
    assert sorted(p.name for p in checkpoint.directory.iterdir()) == ["checkpoint.pt"]  # no temp files left
    resumed = train(checkpoint)
    assert resumed.resumed_from_epoch == 2 and straight.resumed_from_epoch is None
    assert [r.epoch for r in resumed.epochs] == [0, 1, 2, 3, 4]
    assert [r.val_acc for r in resumed.epochs] == [r.val_acc for r in straight.epochs]
    assert [r.train_loss for r in resumed.epochs] == pytest.approx([r.train_loss for r in straight.epochs], abs=0)
    assert resumed.test_acc == straight.test_acc and straight.test_acc > 0.6
    assert checkpoint.saved_epoch() == 5
    checkpoint.clear()
    assert checkpoint.load() is None and not checkpoint.directory.exists()


def test_checkpoint_files_load_with_weights_only(tmp_path: Path) -> None:
    checkpoint = Checkpointer(tmp_path, "k")
    checkpoint.save({"epoch": 1, "weights": torch.ones(2), "records": [{"epoch": 0, "val_acc": 0.5}]})
    loaded = torch.load(checkpoint.path, weights_only=True)
    assert loaded["epoch"] == 1 and loaded["weights"].tolist() == [1.0, 1.0]
    torch.save({"epoch": 2, "bad": Interrupt()}, checkpoint.path)  # an arbitrary pickled object
    with pytest.raises(Exception, match="[Ww]eights"):
        checkpoint.load()
