"""Train one student with one method; measure accuracy, size, epoch time, throughput, memory."""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import torch
from torch import nn

from bench.core.names import UNLABELED
from bench.core.protocol import protocol
from bench.data.batches import epoch_batches, images_per_epoch, steps_per_epoch
from bench.methods.base import Method
from bench.run.fast import TrainOptions, compiled, float_outputs, resident, rows_on, to_memory_format
from bench.run.loader import BatchLoader, ImageInputs, augment_batch, default_workers, eval_batches
from bench.run.metrics import topk_accuracy
from bench.run.optim import make_optimizer, make_scheduler, set_label_smoothing
from bench.run.views import Mix, ViewFeed, mixed_cross_entropy
from bench.store.records import EpochRecord, RunRecord
from bench.teacher_outputs.probe import accuracy


class NonFiniteError(Exception):
    """A NaN or infinite loss or metric: this run fails at once, the sweep goes on (so not a BenchError)."""


def require_finite(name: str, value: float | None, where: str = "") -> None:
    """Raise NonFiniteError naming the number (e.g. `non-finite val_acc at epoch 2`) if it is NaN or infinite."""
    if value is not None and not math.isfinite(value):
        raise NonFiniteError(f"non-finite {name}{where}: {value}")


def check_finite(record: RunRecord) -> RunRecord:
    """The record, if every number of it and its epochs is finite; else NonFiniteError naming the fields."""
    bad = record.non_finite_fields()
    if bad:
        raise NonFiniteError(f"non-finite {', '.join(bad)} in the finished run")
    return record


@dataclass(frozen=True)
class TrainData:
    """Student inputs (teacher features, or image inputs read batch by batch), labels, the teacher's targets."""

    inputs: dict[str, torch.Tensor | ImageInputs]  # split -> (N, ...) student inputs
    labels: dict[str, torch.Tensor]  # split -> (N,) int64
    teacher_train: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N_train, ...)
    class_labels: bool = True  # False when labels are not classes (retrieval: image indices): no train_acc
    epoch_rows: int | None = None  # data.budget steps: an epoch takes the batches of a pass over this many rows
    views: ViewFeed | None = None  # data.teacher_views cached/online: train inputs and targets per batch


@dataclass(frozen=True)
class TrainResult:
    epochs: tuple[EpochRecord, ...]
    val_acc: float
    test_acc: float | None
    epoch_seconds: float
    train_images_per_s: float
    peak_mem_mb: float
    resumed_from_epoch: int | None = None  # epochs restored from a checkpoint, None for a fresh run
    train_steps: int | None = None  # optimizer steps over the whole run (issue 29: compute matching)
    images_seen: int | None = None  # training images forwarded over the whole run
    test_top5: float | None = None
    bundle_size: int | None = None  # cells in the stacked model it trained in (bench/run/train_bundle.py); None:
    # the single-run loop


EpochCallback = Callable[[EpochRecord], None]


class Checkpointer(Protocol):
    """Where train_student keeps its state between epochs (see bench.sweep.checkpoint)."""

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
def predict_logits(student: nn.Module, inputs: torch.Tensor | ImageInputs, device: torch.device,
                   batch_size: int = 512, options: TrainOptions | None = None) -> torch.Tensor:
    """The student's logits for every row of `inputs` (streamed batch by batch), in eval mode, on the CPU."""
    options = options or TrainOptions()
    student.eval()
    channels_last = options.use_channels_last(student, device)
    with options.autocast(device):
        return torch.cat([student(batch)["logits"].float().cpu()
                          for batch in eval_batches(inputs, device, batch_size, channels_last)])


def evaluate(student: nn.Module, inputs: torch.Tensor | ImageInputs, labels: torch.Tensor, device: torch.device,
             options: TrainOptions | None = None) -> float:
    """Top-1 accuracy on one split."""
    return accuracy(predict_logits(student, inputs, device, options=options), labels)


@dataclass
class _EpochSums:
    """Running sums over one epoch's batches: losses on the host, correct predictions on the device."""

    total: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    correct: torch.Tensor | int | None = None  # stays on the device: one sync per epoch, not per batch
    seen: torch.Tensor | int | None = None  # labeled rows seen (transfer-set rows, label -1, are not counted)

    def add_loss(self, total: float, terms: dict[str, float], epoch: int) -> None:
        """Add one batch's losses; a NaN or infinite one stops the run (epoch and batch are 1-based)."""
        self.batches += 1
        bad = {name: value for name, value in {**terms, "total": total}.items() if not math.isfinite(value)}
        if bad:
            shown = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise NonFiniteError(f"non-finite loss at epoch {epoch}, batch {self.batches} ({shown})")
        self.total += total
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value

    def add_predictions(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        labeled = labels != UNLABELED
        hits = ((logits.detach().argmax(dim=-1) == labels) & labeled).sum()
        self.correct = hits if self.correct is None else self.correct + hits
        self.seen = labeled.sum() if self.seen is None else self.seen + labeled.sum()

    def add_counts(self, correct: int, seen: int) -> None:
        """add_predictions' counts, already read to the host (a bundle reads them with its losses, one sync a step)."""
        self.correct = correct if self.correct is None else self.correct + correct
        self.seen = seen if self.seen is None else self.seen + seen

    def means(self) -> tuple[float, dict[str, float], float | None]:
        """Mean total loss, mean of each term, and top-1 train accuracy (None without class logits)."""
        batches = max(self.batches, 1)
        seen = int(self.seen) if self.seen is not None else 0
        accuracy = float(self.correct) / seen if self.correct is not None and seen else None
        return self.total / batches, {name: value / batches for name, value in self.terms.items()}, accuracy


@dataclass
class _Loop:
    """One training run's moving parts, as the epoch loop reads them."""

    student: nn.Module
    forward: nn.Module  # the student, or its torch.compile wrapper (same parameters)
    method: Method
    data: TrainData
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch_size: int
    generator: torch.Generator  # the batch order (the same draws as ever)
    augment_generator: torch.Generator  # crops and flips: separate, so the order does not depend on augmentation
    device: torch.device
    options: TrainOptions
    channels_last: bool
    teacher: dict[str, torch.Tensor]  # the teacher's train targets, on the device when they fit
    loader: BatchLoader | None  # image inputs: their DataLoader


Batch = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None, Mix | None]


def _batches(loop: _Loop, epoch: int) -> Iterator[Batch]:
    """This epoch's (row index, float inputs on the device, the views' teacher targets or None, mixup or None),
    in the order of the run's seeded generator."""
    batches = epoch_batches(len(loop.data.labels["train"]), loop.data.epoch_rows, loop.batch_size, loop.generator)
    inputs, views = loop.data.inputs["train"], loop.data.views
    if loop.loader is None or not isinstance(inputs, ImageInputs):
        for index in batches:
            if views is not None:
                yield index, *views.batch(index, epoch, None, loop.augment_generator, loop.device)
            else:
                yield index, rows_on(inputs, index, index.to(loop.device), loop.device), None, None  # type: ignore[arg-type]
        return
    for index, raw in loop.loader.epoch(batches):
        raw = raw.to(loop.device, non_blocking=True)
        if views is not None:
            yield index, *views.batch(index, epoch, raw, loop.augment_generator, loop.device)
        else:
            yield index, augment_batch(raw, inputs, loop.options.augment, loop.augment_generator), None, None


def _train_epoch(loop: _Loop, epoch: int) -> tuple[float, dict[str, float], float | None]:
    """One pass over the train split; returns mean loss, mean terms and train top-1 (`epoch` is 1-based)."""
    loop.student.train()
    loop.method.train()
    sums = _EpochSums()
    for index, inputs, view_targets, mix in _batches(loop, epoch):
        device_index = index.to(loop.device)
        labels = loop.data.labels["train"][index].to(loop.device, non_blocking=True)
        teacher = view_targets if view_targets is not None else {
            name: rows_on(t, index, device_index, loop.device) for name, t in loop.teacher.items()}
        teacher["indices"] = device_index  # each sample's training row (methods with per-sample state: crd)
        with loop.options.autocast(loop.device):
            outputs = float_outputs(loop.forward(to_memory_format(inputs, loop.channels_last)))
            terms = loop.method(outputs, teacher, labels)
            if mix is not None and "ce" in terms:  # mixup: the CE of both labels, by the mixing ratio
                terms["ce"] = mixed_cross_entropy(outputs["logits"], labels, mix, loop.method.label_smoothing)
            loss = loop.method.total(terms).float()
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        loop.scheduler.step()
        sums.add_loss(float(loss.detach()), {name: float(value.detach()) for name, value in terms.items()}, epoch)
        logits = outputs.get("logits") if isinstance(outputs, Mapping) else None
        if loop.data.class_labels and isinstance(logits, torch.Tensor):
            sums.add_predictions(logits, labels)
    return sums.means()


def _make_loop(student: nn.Module, method: Method, data: TrainData, hparams: Mapping[str, object], epochs: int,
               seed: int, device: torch.device, options: TrainOptions) -> _Loop:
    """Optimizer, lr schedule, generators, device placement and the image loader of one run."""
    batch_size = int(hparams["batch_size"])  # type: ignore[arg-type]
    parameters = [p for p in list(student.parameters()) + list(method.parameters()) if p.requires_grad]
    optimizer = make_optimizer(parameters, hparams)
    rows = data.epoch_rows or len(data.labels["train"])
    scheduler = make_scheduler(optimizer, hparams, epochs, steps_per_epoch(rows, batch_size),
                               total_steps=epochs * -(-rows // batch_size))
    set_label_smoothing(method, float(protocol(hparams)["label_smoothing"]))  # type: ignore[arg-type]
    channels_last = options.use_channels_last(student, device)
    if channels_last:
        student.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    tensors = {f"input:{split}": x for split, x in data.inputs.items() if isinstance(x, torch.Tensor)}
    teacher_train = data.teacher_train if data.views is None else {}  # views: read per batch from the feed
    placed = resident({**tensors, **{f"teacher:{k}": t for k, t in teacher_train.items()}}, device,
                      options.resident_features)
    inputs = {split: placed.get(f"input:{split}", x) for split, x in data.inputs.items()}
    teacher = {name: placed[f"teacher:{name}"] for name in teacher_train}
    train = inputs["train"]
    workers = options.loader_workers if options.loader_workers is not None else default_workers(device)
    loader = BatchLoader(train, workers, device.type == "cuda") if isinstance(train, ImageInputs) else None
    return _Loop(student, compiled(student, options.compile), method, replace(data, inputs=inputs), optimizer,
                 scheduler, batch_size, torch.Generator().manual_seed(seed),
                 torch.Generator().manual_seed(seed + 1), device, options, channels_last, teacher, loader)


def train_student(
    student: nn.Module, method: Method, data: TrainData, hparams: Mapping[str, object],
    epochs: int, seed: int, device: torch.device, on_epoch: EpochCallback | None = None,
    checkpoint: Checkpointer | None = None, val_score: Callable[[], float] | None = None,
    options: TrainOptions | None = None,
) -> TrainResult:
    """AdamW + cosine (or the hparams' optimizer and schedule) over student and method parameters; val every
    epoch, test at the end.

    `val_score` replaces val accuracy (retrieval scores val recall in the teacher's joint space).
    A NaN or infinite loss (any batch) or val/test score raises NonFiniteError at once.
    `options` (bench/run/fast.py): bf16 autocast, channels_last, compile, loader workers, resident tensors.
    """
    options = options or TrainOptions()
    torch.manual_seed(seed)
    student.to(device)
    method.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loop = _make_loop(student, method, data, hparams, epochs, seed, device, options)
    records: list[EpochRecord] = []
    train_seconds = 0.0
    parts = {"student": student, "method": method, "optimizer": loop.optimizer, "scheduler": loop.scheduler}
    generators = {"generator": loop.generator, "augment_generator": loop.augment_generator}
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        records, train_seconds = _restore(saved, parts, generators)
    resumed_from_epoch = len(records) or None  # None: a fresh run (or a rejected checkpoint: restarted at 0)
    for epoch in range(len(records), epochs):
        start = time.perf_counter()
        train_loss, terms, train_acc = _train_epoch(loop, epoch + 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - start
        val_acc = val_score() if val_score is not None else evaluate(student, loop.data.inputs["val"],
                                                                     data.labels["val"], device, options)
        require_finite("val_acc", val_acc, f" at epoch {epoch + 1}")
        record = EpochRecord(epoch, train_loss, terms, val_acc, time.perf_counter() - start, train_acc)
        records.append(record)
        if checkpoint is not None:
            checkpoint.save(_train_state(parts, generators, records, train_seconds))
        if on_epoch is not None:
            on_epoch(record)
    return finish_training(loop, records, train_seconds, epochs, resumed_from_epoch)


def finish_training(loop: _Loop, records: list[EpochRecord], train_seconds: float, epochs: int,
                    resumed_from_epoch: int | None) -> TrainResult:
    """Test scores (when the data has a test split) and the run's speed and size figures, after its last epoch."""
    student, data, device, options = loop.student, loop.data, loop.device, loop.options
    test_acc = test_top5 = None  # a search trial leaves the test split out (search sees only val)
    if "test" in data.inputs:
        test_logits = predict_logits(student, loop.data.inputs["test"], device, options=options)
        test_acc = accuracy(test_logits, data.labels["test"])
        test_top5 = topk_accuracy(test_logits, data.labels["test"], 5)
        require_finite("test_acc", test_acc)
    epoch_images = data.epoch_rows or len(data.labels["train"])
    if loop.channels_last:
        student.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # plain state for saving
    return TrainResult(
        epochs=tuple(records),
        val_acc=records[-1].val_acc if records else float("nan"),
        test_acc=test_acc,
        test_top5=test_top5,
        epoch_seconds=train_seconds / max(epochs, 1),
        train_images_per_s=epochs * epoch_images / max(train_seconds, 1e-9),
        peak_mem_mb=_peak_memory_mb(device),
        resumed_from_epoch=resumed_from_epoch,
        train_steps=epochs * steps_per_epoch(epoch_images, loop.batch_size),
        images_seen=epochs * images_per_epoch(epoch_images, loop.batch_size),
    )



def _train_state(parts: dict[str, Any], generators: dict[str, torch.Generator], records: list[EpochRecord],
                 train_seconds: float, torch_rng: torch.Tensor | None = None) -> dict[str, Any]:
    """Everything needed to continue after the last finished epoch (tensors and plain values only); `torch_rng`:
    the global generator's state to resume with (a bundled cell's own dropout generator), by default this one's."""
    state = {name: part.state_dict() for name, part in parts.items()}
    return {**state, "epoch": len(records), "records": [asdict(record) for record in records],
            "train_seconds": train_seconds, **{name: g.get_state() for name, g in generators.items()},
            "torch_rng": torch.get_rng_state() if torch_rng is None else torch_rng,
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore(saved: dict[str, Any], parts: dict[str, Any],
             generators: dict[str, torch.Generator]) -> tuple[list[EpochRecord], float]:
    """Load a checkpoint into the parts and RNGs; returns the finished epochs and their train time.

    A verified checkpoint that still does not fit (a missing key, another model's shapes) is rejected through
    `saved.reject` (moved aside, logged) and everything is put back: the run starts at epoch 0 (reported as a
    fresh run) instead of failing on every re-run. A plain dict without `reject` still raises.
    """
    import copy

    before = {name: copy.deepcopy(part.state_dict()) for name, part in parts.items()}
    rng = {name: g.get_state() for name, g in generators.items()}, torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    try:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        for name, g in generators.items():  # "generator" is required; later ones (augment) may be absent
            g.set_state(saved[name] if name == "generator" else saved.get(name, g.get_state()))
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return [EpochRecord(**record) for record in saved["records"]], float(saved["train_seconds"])
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as error:
        if not hasattr(saved, "reject"):
            raise
        for name, part in parts.items():
            part.load_state_dict(before[name])
        for name, g in generators.items():
            g.set_state(rng[0][name])
        torch.set_rng_state(rng[1])
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)
        saved.reject(f"it does not fit this run ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
        return [], 0.0
