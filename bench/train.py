"""Train one student with one method; measure accuracy, size, epoch time, throughput, memory."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from bench.metrics import topk_accuracy
from bench.probe import accuracy
from bench.store.records import EpochRecord
from methods.base import Method


@dataclass(frozen=True)
class TrainData:
    """Student inputs (images or teacher features), labels, and the teacher's train targets."""

    inputs: dict[str, torch.Tensor]  # split -> (N, ...) student inputs
    labels: dict[str, torch.Tensor]  # split -> (N,) int64
    teacher_train: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N_train, ...)


@dataclass(frozen=True)
class TrainResult:
    epochs: tuple[EpochRecord, ...]
    val_acc: float
    test_acc: float | None
    epoch_seconds: float
    train_images_per_s: float
    peak_mem_mb: float
    resumed_from_epoch: int | None = None  # epochs restored from a checkpoint, None for a fresh run
    test_top5: float | None = None


EpochCallback = Callable[[EpochRecord], None]


class Checkpointer(Protocol):
    """Where train_student keeps its state between epochs (see bench.checkpoint)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


def state_size_mb(module: nn.Module) -> float:
    """Megabytes of the module's saved state (safetensors bytes)."""
    from safetensors.torch import save

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    return len(save(state)) / 1e6 if state else 0.0


def num_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # process peak RSS
    return peak_kb / 2**20 if sys.platform == "darwin" else peak_kb / 1024


@torch.inference_mode()
def predict_logits(student: nn.Module, inputs: torch.Tensor, device: torch.device,
                   batch_size: int = 512) -> torch.Tensor:
    """The student's logits for every row of `inputs`, in eval mode, on the CPU."""
    student.eval()
    return torch.cat([student(inputs[i : i + batch_size].to(device))["logits"].float().cpu()
                      for i in range(0, len(inputs), batch_size)])


def evaluate(student: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Top-1 accuracy on one split."""
    return accuracy(predict_logits(student, inputs, device), labels)


def _train_epoch(student: nn.Module, method: Method, data: TrainData, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, batch_size: int,
                 generator: torch.Generator, device: torch.device) -> tuple[float, dict[str, float]]:
    student.train()
    method.train()
    order = torch.randperm(len(data.labels["train"]), generator=generator)
    sums: dict[str, float] = {}
    total_sum, batches = 0.0, 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:  # batch norm needs two samples
            continue
        inputs = data.inputs["train"][index].to(device, non_blocking=True)
        labels = data.labels["train"][index].to(device, non_blocking=True)
        teacher = {name: t[index].to(device, non_blocking=True) for name, t in data.teacher_train.items()}
        teacher["indices"] = index.to(device)  # each sample's training row (methods with per-sample state: crd)
        terms = method(student(inputs), teacher, labels)
        loss = method.total(terms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_sum += float(loss.detach())
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        batches += 1
    batches = max(batches, 1)
    return total_sum / batches, {name: value / batches for name, value in sums.items()}


def train_student(
    student: nn.Module, method: Method, data: TrainData, hparams: Mapping[str, object],
    epochs: int, seed: int, device: torch.device, on_epoch: EpochCallback | None = None,
    checkpoint: Checkpointer | None = None, val_score: Callable[[], float] | None = None,
) -> TrainResult:
    """AdamW + cosine schedule over student and method parameters; val every epoch, test at the end.

    `val_score` replaces val accuracy (retrieval scores val recall in the teacher's joint space).
    """
    torch.manual_seed(seed)
    student.to(device)
    method.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batch_size = int(hparams["batch_size"])  # type: ignore[arg-type]
    parameters = [p for p in list(student.parameters()) + list(method.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=float(hparams["lr"]),  # type: ignore[arg-type]
                                  weight_decay=float(hparams["weight_decay"]))  # type: ignore[arg-type]
    steps = max(1, epochs * -(-len(data.labels["train"]) // batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    records: list[EpochRecord] = []
    train_seconds = 0.0
    parts = {"student": student, "method": method, "optimizer": optimizer, "scheduler": scheduler}
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        records, train_seconds = _restore(saved, parts, generator)
    for epoch in range(len(records), epochs):
        start = time.perf_counter()
        train_loss, terms = _train_epoch(student, method, data, optimizer, scheduler, batch_size,
                                         generator, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - start
        val_acc = val_score() if val_score is not None else evaluate(student, data.inputs["val"],
                                                                     data.labels["val"], device)
        record = EpochRecord(epoch, train_loss, terms, val_acc, time.perf_counter() - start)
        records.append(record)
        if checkpoint is not None:
            checkpoint.save(_train_state(parts, generator, records, train_seconds))
        if on_epoch is not None:
            on_epoch(record)
    test_acc = test_top5 = None  # a search trial leaves the test split out (search sees only val)
    if "test" in data.inputs:
        test_logits = predict_logits(student, data.inputs["test"], device)
        test_acc = accuracy(test_logits, data.labels["test"])
        test_top5 = topk_accuracy(test_logits, data.labels["test"], 5)
    return TrainResult(
        epochs=tuple(records),
        val_acc=records[-1].val_acc if records else float("nan"),
        test_acc=test_acc,
        test_top5=test_top5,
        epoch_seconds=train_seconds / max(epochs, 1),
        train_images_per_s=epochs * len(data.labels["train"]) / max(train_seconds, 1e-9),
        peak_mem_mb=_peak_memory_mb(device),
        resumed_from_epoch=None if saved is None else int(saved["epoch"]),
    )


def _train_state(parts: dict[str, Any], generator: torch.Generator, records: list[EpochRecord],
                 train_seconds: float) -> dict[str, Any]:
    """Everything needed to continue after the last finished epoch (tensors and plain values only)."""
    state = {name: part.state_dict() for name, part in parts.items()}
    return {**state, "epoch": len(records), "records": [asdict(record) for record in records],
            "train_seconds": train_seconds, "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore(saved: dict[str, Any], parts: dict[str, Any],
             generator: torch.Generator) -> tuple[list[EpochRecord], float]:
    """Load a checkpoint into the parts and RNGs; returns the finished epochs and their train time."""
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return [EpochRecord(**record) for record in saved["records"]], float(saved["train_seconds"])
