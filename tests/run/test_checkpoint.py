"""Epoch checkpoints: atomic files, weights_only loading, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.core.registries import METHODS, STUDENTS
from bench.methods.base import MethodContext
from bench.run.train import train_student
from bench.students.base import StudentContext
from bench.sweep.checkpoint import Checkpointer, seal, unseal
from tests.support.train_data import HPARAMS, tiny_data

EPOCHS = 5


class Interrupt(Exception):
    """Stands in for a worker killed after an epoch."""


def train(checkpoint: Checkpointer | None, stop_after: int | None = None):  # noqa: ANN201
    torch.manual_seed(123)  # different init noise in each call unless the seed inside wins
    student = STUDENTS.entry("bottleneck").obj(StudentContext(3, 8, 8), HPARAMS)
    method = METHODS.get("kd")(MethodContext(3, 8, student.embed_dim), HPARAMS)

    def on_epoch(record) -> None:  # noqa: ANN001
        if stop_after is not None and record.epoch + 1 == stop_after:
            raise Interrupt

    return train_student(student, method, tiny_data(), HPARAMS, EPOCHS, 7, torch.device("cpu"), on_epoch, checkpoint)


@pytest.mark.usefixtures("one_thread")
def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = train(None)
    checkpoint = Checkpointer(tmp_path, "spec123", EPOCHS)
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
    loaded = unseal(torch.load(checkpoint.path, weights_only=True))
    assert loaded["epoch"] == 1 and loaded["weights"].tolist() == [1.0, 1.0] and loaded["spec_key"] == "k"
    state = {"epoch": 1, "bad": Interrupt(), "records": [{"epoch": 0}], "spec_key": "k"}
    torch.save(seal(state), checkpoint.path)  # an arbitrary pickled object, even correctly sealed, is never unpickled
    assert checkpoint.load() is None and len(rejected(checkpoint)) == 1


def rejected(checkpoint: Checkpointer) -> list[Path]:
    return sorted(checkpoint.directory.glob("checkpoint.pt.corrupt-*"))


def edit(checkpoint: Checkpointer, change, reseal: bool) -> None:  # noqa: ANN001
    """Change the state inside the file; `reseal` also recomputes its sha256 (a forger who knows the scheme)."""
    sealed = torch.load(checkpoint.path, weights_only=True)
    state = unseal(sealed)
    change(state)
    edited = seal(state)
    torch.save(edited if reseal else {**edited, "sha256": sealed["sha256"]}, checkpoint.path)


def claim_all_epochs(state: dict) -> None:
    """Pretend every epoch ran: the resumed run would skip training and be stored at near chance accuracy."""
    state["records"] += [{**state["records"][-1], "epoch": e} for e in range(len(state["records"]), EPOCHS)]
    state["epoch"] = EPOCHS


DAMAGE = {
    "truncated": lambda c: c.path.write_bytes(c.path.read_bytes()[: c.path.stat().st_size // 2]),
    "garbage": lambda c: c.path.write_bytes(bytes(range(256)) * 40),
    "unsealed (older version)": lambda c: torch.save(unseal(torch.load(c.path, weights_only=True)), c.path),
    "wrong spec key, resealed": lambda c: edit(c, lambda s: s.update(spec_key="another-spec"), reseal=True),
    "claims all epochs": lambda c: edit(c, claim_all_epochs, reseal=False),
    "claims more epochs, resealed": lambda c: edit(c, lambda s: s.update(epoch=EPOCHS), reseal=True),
    "beyond the spec, resealed": lambda c: edit(c, lambda s: s.update(
        epoch=EPOCHS + 1, records=[{**s["records"][0], "epoch": e} for e in range(EPOCHS + 1)]), reseal=True),
    "missing key, resealed": lambda c: edit(c, lambda s: s.pop("optimizer"), reseal=True),
    "another model, resealed": lambda c: edit(c, lambda s: s.update(
        student={name: t[..., :1] if t.ndim else t for name, t in s["student"].items()}), reseal=True),
}


@pytest.fixture(scope="module")
def straight():  # noqa: ANN201
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(None)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_bad_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path: Path, straight, damage: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = Checkpointer(tmp_path, "spec123", EPOCHS)
    with pytest.raises(Interrupt):
        train(checkpoint, stop_after=2)
    DAMAGE[damage](checkpoint)
    result = train(checkpoint)  # must neither raise nor trust the file
    assert result.resumed_from_epoch is None  # a rejected checkpoint is a fresh run
    assert [r.epoch for r in result.epochs] == list(range(EPOCHS))
    assert [r.val_acc for r in result.epochs] == [r.val_acc for r in straight.epochs]
    assert result.test_acc == straight.test_acc
    assert len(rejected(checkpoint)) == 1  # the evidence is kept, beside the run's new checkpoint
    lines = [r.getMessage() for r in caplog.records if "restarts from epoch 0" in r.getMessage()]
    assert len(lines) == 1 and "checkpoint rejected" in lines[0]
    assert checkpoint.saved_epoch() == EPOCHS  # the fresh run's checkpoint is valid
    checkpoint.clear()
    assert checkpoint.load() is None and rejected(checkpoint)  # clear() never deletes evidence
