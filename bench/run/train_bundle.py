"""Train compatible head-student cells together (bench/run/bundle.py): one stacked model, one step for all of them.

Each cell keeps what a separate train_student run would give it: its own optimizer and lr schedule objects (the
schedule's lr is read every step; the stacked AdamW applies it), batch-order generator, dropout generator (the
separate run's global generator, seeded the same), its own method computing its own loss on its slice, its own
val scoring, test scoring, checkpoint after every epoch (the single-run format, so it resumes alone) and epoch
callback. The bundle's loss is the sum of the cells' totals: slices are independent, so each gets its own gradient.
A cell whose loss turns non-finite fails alone (NonFiniteError); the others go on without its slice.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from bench.core.names import UNLABELED
from bench.data.batches import epoch_batches
from bench.methods.base import Method
from bench.methods.losses import per_model
from bench.run.fast import TrainOptions, resident, rows_on
from bench.run.stacked import StackedAdamW, StackedHeads
from bench.run.train import (
    Checkpointer,
    EpochCallback,
    NonFiniteError,
    TrainData,
    TrainResult,
    _EpochSums,
    _Loop,
    _make_loop,
    _train_state,
    evaluate,
    finish_training,
    require_finite,
)
from bench.store.records import EpochRecord


@dataclass
class BundleCell:
    """One cell's part of a bundle: what train_student would take for it."""

    student: nn.Module
    method: Method
    data: TrainData
    hparams: Mapping[str, object]
    epochs: int
    seed: int
    on_epoch: EpochCallback | None = None
    checkpoint: Checkpointer | None = None
    val_score: Callable[[], float] | None = None
    options: TrainOptions = field(default_factory=TrainOptions)


@dataclass
class _Member:
    """A cell in training: its loop (optimizer, schedule, generators, placed inputs), dropout generator, records."""

    cell: BundleCell
    loop: _Loop
    dropout_generator: torch.Generator
    records: list[EpochRecord] = field(default_factory=list)
    train_seconds: float = 0.0
    sums: _EpochSums = field(default_factory=_EpochSums)


def train_bundle(cells: Sequence[BundleCell], device: torch.device) -> list[TrainResult | Exception]:
    """Train the cells together; one result per cell, in order: its TrainResult, or the exception it failed with.

    Every cell must have the same epochs, batch size and train rows (bundle_key guarantees it). KeyboardInterrupt
    and SystemExit (also from a callback) stop the whole bundle; each cell's checkpoint then holds its last epoch.
    """
    members = [_member(cell, device) for cell in _shared_on_device(cells, device)]
    model = StackedHeads([m.cell.student for m in members], [m.dropout_generator for m in members])
    model.to(device)
    optimizer = StackedAdamW(model, [m.loop.optimizer.param_groups[0]["weight_decay"] for m in members])
    outcomes: dict[int, TrainResult | Exception] = {}
    active = list(range(len(members)))
    with warnings.catch_warnings():  # the schedules step without their (never stepped) optimizers: on purpose
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
        for epoch in range(cells[0].epochs):
            start = time.perf_counter()
            running = list(active)
            outcomes.update(_train_epoch(model, optimizer, members, active, epoch + 1, device))
            seconds = (time.perf_counter() - start) / len(running)  # the bundle's time, shared by its cells
            model.write_back([members[i].cell.student for i in active])
            for position, i in enumerate(active):  # every cell's checkpoint first, then the callbacks (which
                try:  # may interrupt the bundle)
                    _end_epoch(members[i], optimizer, position, epoch, seconds)
                except Exception as error:  # noqa: BLE001 - a NaN val score or a checkpoint the disk refused
                    outcomes[i] = error  # fails this cell alone, as it fails its own run
            for i in active:
                member = members[i]
                try:
                    if i not in outcomes and member.cell.on_epoch is not None:
                        member.cell.on_epoch(member.records[-1])
                except Exception as error:  # noqa: BLE001  # this cell fails alone (as its own run would)
                    outcomes[i] = error
            _drop(model, optimizer, active, outcomes)
            if not active:
                break
    for i in active:
        member = members[i]
        try:
            result = finish_training(member.loop, member.records, member.train_seconds, member.cell.epochs, None)
            outcomes[i] = replace(result, bundle_size=len(cells))
        except NonFiniteError as error:
            outcomes[i] = error
    return [outcomes[i] for i in range(len(members))]


def _drop(model: StackedHeads, optimizer: StackedAdamW, active: list[int], failed: Mapping[int, object]) -> None:
    """Re-stack without the failed cells' slices (in place: `active` loses them too)."""
    kept = [position for position, i in enumerate(active) if i not in failed]
    if len(kept) == len(active):
        return
    if not kept:  # every cell failed: nothing to re-stack, the loop ends
        active.clear()
        return
    model.keep(kept)
    optimizer.keep(kept)
    active[:] = [active[position] for position in kept]


def _shared_on_device(cells: Sequence[BundleCell], device: torch.device) -> list[BundleCell]:
    """The cells with the tensors they share (the same teacher features and targets) moved to the device once, as
    each run's own loop would move them (bench/run/fast.py resident): one copy per bundle, not one per cell."""
    distinct = {id(t): t for cell in cells for t in [*cell.data.inputs.values(), *cell.data.teacher_train.values()]
                if isinstance(t, torch.Tensor)}
    placed = resident({str(key): t for key, t in distinct.items()}, device, cells[0].options.resident_features)

    def moved(values: Mapping[str, object]) -> dict[str, object]:
        return {name: placed.get(str(id(value)), value) for name, value in values.items()}

    return [replace(cell, data=replace(cell.data, inputs=moved(cell.data.inputs),  # type: ignore[arg-type]
                                       teacher_train=moved(cell.data.teacher_train)))  # type: ignore[arg-type]
            for cell in cells]


def _member(cell: BundleCell, device: torch.device) -> _Member:
    """The cell's loop exactly as train_student makes it (same optimizer, schedule and generators)."""
    torch.manual_seed(cell.seed)
    cell.student.to(device)
    cell.method.to(device)
    loop = _make_loop(cell.student, cell.method, cell.data, cell.hparams, cell.epochs, cell.seed, device, cell.options)
    return _Member(cell, loop, torch.Generator().manual_seed(cell.seed))


def _train_epoch(model: StackedHeads, optimizer: StackedAdamW, members: Sequence[_Member], active: list[int],
                 epoch: int, device: torch.device) -> dict[int, Exception]:
    """One pass of every active member over its own batch order; returns {member: error} for those whose loss
    turned non-finite: each stops at that batch, as a separate run would, and the others go on without it."""
    model.train()
    for i in active:
        members[i].cell.method.train()
        members[i].sums = _EpochSums()
    orders = {i: epoch_batches(len(members[i].loop.data.labels["train"]), members[i].loop.data.epoch_rows,
                               members[i].loop.batch_size, members[i].loop.generator) for i in active}
    failed: dict[int, Exception] = {}
    for step in range(len(orders[active[0]])):
        running = [members[i] for i in active]
        index = torch.stack([orders[i][step] for i in active])  # [M, B]: each model's own rows
        device_index = index.to(device)
        outputs = model(_rows([m.loop.data.inputs["train"] for m in running], index, device_index, device))
        teacher = {name: _rows([m.loop.teacher[name] for m in running], index, device_index, device)
                   for name in running[0].loop.teacher}
        teacher["indices"] = device_index
        labels = _rows([m.loop.data.labels["train"] for m in running], index, device_index, device)
        methods = [m.cell.method for m in running]
        terms = type(methods[0]).stacked_terms(methods, outputs, teacher, labels)
        values = torch.stack([terms[name].float() for name in terms], 1)  # [M, terms]
        weights = per_model([[method.term_weights()[name] for name in terms] for method in methods], device,
                            values.dtype)
        totals = (weights * values).sum(1)  # each model's method.total, as its own run sums it
        optimizer.zero_grad()
        totals.sum().backward()
        optimizer.step([m.loop.optimizer.param_groups[0]["lr"] for m in running])
        for member in running:
            member.loop.scheduler.step()
        labeled = labels != UNLABELED
        hits = ((outputs["logits"].detach().argmax(dim=-1) == labels) & labeled).sum(1)
        rows = torch.cat([totals.detach()[:, None], values.detach(), hits[:, None].float(),
                          labeled.sum(1)[:, None].float()], 1).tolist()  # one sync per step
        for position, (i, member) in enumerate(zip(active, running, strict=True)):
            row = rows[position]
            try:
                member.sums.add_loss(row[0], dict(zip(terms, row[1:-2], strict=True)), epoch)
            except NonFiniteError as error:
                failed[i] = error
                continue
            member.sums.add_counts(int(row[-2]), int(row[-1]))
        _drop(model, optimizer, active, failed)
        if not active:
            break
    return failed


def _rows(tensors: Sequence[torch.Tensor], index: torch.Tensor, device_index: torch.Tensor,
          device: torch.device) -> torch.Tensor:
    """Each model's batch rows of its tensor, [M, B, ...]: one gather when every model reads the same tensor (the
    bundle's shared teacher features, see _shared_on_device), else one per model."""
    first = tensors[0]
    if all(tensor is first for tensor in tensors):
        return rows_on(first, index.flatten(), device_index.flatten(), device).view(*index.shape, *first.shape[1:])
    return torch.stack([rows_on(tensor, rows, device_rows, device)
                        for tensor, rows, device_rows in zip(tensors, index, device_index, strict=True)])


def _end_epoch(member: _Member, optimizer: StackedAdamW, position: int, epoch: int, seconds: float) -> None:
    """Val score, epoch record and checkpoint (the single-run format) of one cell, as train_student makes them."""
    cell, loop = member.cell, member.loop
    start = time.perf_counter()
    val_acc = cell.val_score() if cell.val_score is not None else evaluate(
        cell.student, loop.data.inputs["val"], loop.data.labels["val"], loop.device, cell.options)
    require_finite("val_acc", val_acc, f" at epoch {epoch + 1}")
    train_loss, terms, train_acc = member.sums.means()
    member.train_seconds += seconds
    record = EpochRecord(epoch, train_loss, terms, val_acc, seconds + time.perf_counter() - start, train_acc)
    member.records.append(record)
    if cell.checkpoint is not None:
        parameters = loop.optimizer.param_groups[0]["params"]
        for parameter, state in zip(parameters, optimizer.slice_state(position), strict=True):
            loop.optimizer.state[parameter] = state
        parts = {"student": cell.student, "method": cell.method, "optimizer": loop.optimizer,
                 "scheduler": loop.scheduler}
        generators = {"generator": loop.generator, "augment_generator": loop.augment_generator}
        cell.checkpoint.save(_train_state(parts, generators, member.records, member.train_seconds,
                                          member.dropout_generator.get_state()))
