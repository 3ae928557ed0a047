"""Fine-tune a teacher on the task: a linear head on its pooled embedding plus its last blocks, cached on disk.

The teachers of most distillation studies (RepDistiller's CIFAR-100 tables, DeiT) are trained on the target task
before they teach; a frozen ImageNet backbone read by a linear probe is often no stronger than a small student.
The fine-tuned teacher's logits on train are in-sample (the model saw those labels), as in RepDistiller and DeiT;
they are not out-of-fold like the probe's default KD targets.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.core.names import SPLITS
from bench.core.taps import POOLED
from bench.data.batches import epoch_batches
from bench.data.images import to_tensor
from bench.data.splits import DataConfig, DatasetSplits
from bench.teacher_outputs.cache import CacheEvent, FeatureCache
from bench.teacher_outputs.features import TeacherOutputs, run_teacher, split_fingerprint
from bench.teacher_outputs.probe import accuracy
from bench.teachers.base import Preprocess, Teacher

FINETUNE_VERSION = 1  # in the cache key: bump when the training recipe changes
ALL = "all"


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tune's knobs: what trains, the lr grid (chosen on val), the epoch budget, labels kept."""

    unfreeze: int | str = ALL  # the teacher's last N blocks (plus what follows them) train; 0: the head only
    lrs: tuple[float, ...] = (1e-3, 3e-4)  # one run per lr; the best val accuracy wins
    max_epochs: int = 4  # cosine schedule over this many epochs; the best epoch on val is kept
    batch_size: int = 64
    weight_decay: float = 0.05
    seed: int = 0
    labeled_limit: int | None = None  # train only on these many labeled rows (see labeled_rows); None: all
    label_seed: int = 0
    epoch_rows: int | None = None  # data.finetune_budget steps: an epoch takes the steps of a pass over these rows

    def key(self) -> dict[str, object]:
        key = {**asdict(self), "lrs": list(self.lrs), "version": FINETUNE_VERSION}
        if self.epoch_rows is None:  # budget epochs: the key of before, so cached fine-tunes still hit
            del key["epoch_rows"]
        return key


@dataclass(frozen=True)
class FinetuneResult:
    """The fine-tuned state (changed tensors only), logits and pooled features per split, what was chosen."""

    state: dict[str, torch.Tensor]  # encoder.<name> of the unfrozen modules and head.weight / head.bias
    logits: dict[str, torch.Tensor]
    pooled: dict[str, torch.Tensor]
    val_acc: float
    test_acc: float
    lr: float
    epochs: int  # the chosen (best-on-val) epoch, 1-based
    train_acc: float  # on the labeled train rows at the last epoch of the chosen lr's run
    epoch_seconds: float  # mean over every epoch of every lr tried
    seconds: float  # the whole fine-tune (as measured when it ran, also on a cache hit)
    hit: bool


def labeled_rows(labels: np.ndarray, labeled_limit: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of the train rows that keep their label: the first `labeled_limit` of a seeded
    stratified order (each class shuffled, classes dealt round-robin), so any limit is class-balanced."""
    if labeled_limit is None or labeled_limit >= len(labels):
        return np.arange(len(labels))
    if labeled_limit < 1:
        raise BenchError(f"data.labeled_limit must be >= 1, got {labeled_limit}")
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    order = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return np.sort(np.asarray(order[:labeled_limit], dtype=np.int64))


def _module_prefixes(encoder: nn.Module, unfreeze: int | str) -> list[str]:
    """Names of the encoder's top-level modules (or 'blocks.<i>') that train; [''] means everything."""
    if unfreeze == ALL:
        return [""]
    blocks = getattr(encoder, "blocks", None)
    if not isinstance(unfreeze, int) or unfreeze < 0 or not isinstance(blocks, nn.Sequential):
        raise BenchError(f"finetune unfreeze={unfreeze!r}: give 'all' or a block count >= 0 "
                         "(a count needs a timm model with `blocks`)")
    if unfreeze > len(blocks):
        raise BenchError(f"finetune unfreeze={unfreeze} but the teacher has {len(blocks)} blocks; use 'all'")
    if unfreeze == 0:
        return []
    names = [name for name, _ in encoder.named_children()]
    classifier = encoder.get_classifier() if hasattr(encoder, "get_classifier") else None
    tail = [name for name in names[names.index("blocks") + 1:] if getattr(encoder, name) is not classifier]
    return [f"blocks.{i}" for i in range(len(blocks) - unfreeze, len(blocks))] + tail


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(prefix == "" or name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _prepare(teacher: Teacher, config: FinetuneConfig, num_classes: int) -> tuple[Teacher, nn.Linear, list[str]]:
    """A private copy of the teacher with the chosen modules trainable, and a fresh seeded linear head."""
    model = copy.deepcopy(teacher)
    prefixes = _module_prefixes(model.encoder, config.unfreeze)
    for name, parameter in model.encoder.named_parameters():
        parameter.requires_grad_(_under(name, prefixes))
    torch.manual_seed(config.seed)
    return model, nn.Linear(teacher.embed_dim, num_classes), prefixes


def _set_mode(model: Teacher, prefixes: Sequence[str], training: bool) -> None:
    """Unfrozen modules in train mode (batch-norm statistics, dropout), frozen ones in eval mode."""
    model.encoder.eval()
    if training:
        for name, module in model.encoder.named_modules():
            if prefixes == [""] or (name and _under(name, prefixes)):
                module.train(True)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


class LabeledImages:
    """The labeled train rows as a source of float batches: uint8 rows read and converted one batch at a time."""

    def __init__(self, data: DatasetSplits, rows: np.ndarray, preprocess: Preprocess) -> None:
        self.images, self.rows, self.preprocess = data.train.images, rows, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """(len(index), 3, S, S) float32 for these positions among the labeled rows."""
        pre = self.preprocess
        return to_tensor(self.images[self.rows[index.numpy()]], pre.input_size, pre.mean, pre.std,
                         pre.interpolation)


def _epoch(model: Teacher, head: nn.Linear, images: LabeledImages, labels: torch.Tensor, prefixes: list[str],
           optimizer: torch.optim.Optimizer, scheduler, generator: torch.Generator, batch_size: int,
           device: torch.device, epoch_rows: int | None = None) -> float:
    """One pass over the labeled rows (or the steps of a pass over `epoch_rows`); returns train accuracy."""
    _set_mode(model, prefixes, True)
    correct, seen = torch.zeros((), device=device), 0
    for index in epoch_batches(len(labels), epoch_rows, batch_size, generator):
        seen += len(index)
        batch, target = images[index].to(device), labels[index].to(device)
        if getattr(model, "channels_last", True):
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = head(model.features(batch, [POOLED])[POOLED]).float()
        loss = F.cross_entropy(logits, target)
        if not torch.isfinite(loss):
            raise BenchError(f"fine-tune loss is not finite ({float(loss)}); lower the fine-tune lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        correct += (logits.detach().argmax(-1) == target).sum()
    return float(correct) / max(seen, 1)


def _evaluate(model: Teacher, head: nn.Linear, data: DatasetSplits, preprocess: Preprocess,
              device: torch.device, splits: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Pooled features (the frozen pass's code, run on the fine-tuned copy) and head logits per split."""
    _set_mode(model, [], False)
    pooled = {split: run_teacher(model, data.split(split), preprocess, [POOLED], device)[POOLED] for split in splits}
    with torch.no_grad():
        head_cpu = copy.deepcopy(head).cpu().float()
        logits = {split: head_cpu(value) for split, value in pooled.items()}
    return logits, pooled


@dataclass
class _Run:
    lr: float
    epoch: int
    val_acc: float
    train_acc: float
    state: dict[str, torch.Tensor]


def _train_one_lr(teacher: Teacher, data: DatasetSplits, config: FinetuneConfig, lr: float,
                  images: LabeledImages, labels: torch.Tensor, device: torch.device) -> tuple[_Run, list[float]]:
    """Fine-tune from the teacher's weights with one lr; keep the best epoch on val."""
    model, head, prefixes = _prepare(teacher, config, data.num_classes)
    model.to(device)
    head.to(device)
    parameters = [p for p in model.encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)
    steps = config.max_epochs * max(1, -(-(config.epoch_rows or len(labels)) // config.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(config.seed)
    preprocess = teacher.preprocess.with_size(data.config.image_size)
    best, seconds, train_acc = None, [], float("nan")
    for epoch in range(1, config.max_epochs + 1):
        start = time.perf_counter()
        train_acc = _epoch(model, head, images, labels, prefixes, optimizer, scheduler, generator,
                           config.batch_size, device, config.epoch_rows)
        seconds.append(time.perf_counter() - start)
        val_logits, _ = _evaluate(model, head, data, preprocess, device, ["val"])
        val_acc = accuracy(val_logits["val"], torch.from_numpy(data.val.labels))
        if best is None or val_acc > best.val_acc:
            best = _Run(lr, epoch, val_acc, train_acc, _changed_state(model, head, prefixes))
    assert best is not None
    best.train_acc = train_acc
    return best, seconds


def _changed_state(model: Teacher, head: nn.Linear, prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tensors fine-tuning may change: the unfrozen modules' parameters and buffers, and the head."""
    state = {f"encoder.{name}": value.detach().cpu().clone()
             for name, value in model.encoder.state_dict().items() if _under(name, prefixes)}
    state.update({f"head.{name}": value.detach().cpu().clone() for name, value in head.state_dict().items()})
    return state


def apply_state(teacher: Teacher, state: dict[str, torch.Tensor], num_classes: int) -> tuple[Teacher, nn.Linear]:
    """A copy of the teacher with the fine-tuned tensors loaded, and its head."""
    model = copy.deepcopy(teacher)
    encoder_state = {name[len("encoder."):]: value for name, value in state.items() if name.startswith("encoder.")}
    model.encoder.load_state_dict(encoder_state, strict=False)
    head = nn.Linear(teacher.embed_dim, num_classes)
    head.load_state_dict({name[len("head."):]: value for name, value in state.items() if name.startswith("head.")})
    return model, head


def _fit(teacher: Teacher, data: DatasetSplits, config: FinetuneConfig,
         device: torch.device) -> dict[str, torch.Tensor]:
    """Every lr of the grid, the best on val (ties: the earlier lr) re-applied, outputs on every split."""
    if not config.lrs or config.max_epochs < 1:
        raise BenchError(f"finetune needs at least one lr and one epoch, got lrs={config.lrs} "
                         f"max_epochs={config.max_epochs}")
    preprocess = teacher.preprocess.with_size(data.config.image_size)
    rows = labeled_rows(data.train.labels, config.labeled_limit, config.label_seed)
    images = LabeledImages(data, rows, preprocess)  # never all rows as float at once
    labels = torch.from_numpy(data.train.labels[rows])
    runs, seconds = [], []
    for lr in config.lrs:
        run, epoch_seconds = _train_one_lr(teacher, data, config, lr, images, labels, device)
        runs.append(run)
        seconds += epoch_seconds
    best = max(runs, key=lambda run: run.val_acc)  # max keeps the first of equal scores
    model, head = apply_state(teacher, best.state, data.num_classes)
    logits, pooled = _evaluate(model, head, data, preprocess, device, SPLITS)
    scalars = {"val_acc": accuracy(logits["val"], torch.from_numpy(data.val.labels)),
               "test_acc": accuracy(logits["test"], torch.from_numpy(data.test.labels)),
               "lr": best.lr, "epochs": best.epoch, "train_acc": best.train_acc,
               "epoch_seconds": sum(seconds) / len(seconds), "labeled": len(rows)}
    return {**{f"state.{name}": value for name, value in best.state.items()},
            **{f"logits.{split}": logits[split] for split in SPLITS},
            **{f"pooled.{split}": pooled[split] for split in SPLITS},
            **{name: torch.tensor(float(value), dtype=torch.float64) for name, value in scalars.items()}}


SCALARS = ("val_acc", "test_acc", "lr", "epochs", "train_acc", "epoch_seconds", "labeled")


def _problem(tensors: dict[str, torch.Tensor], data: DatasetSplits) -> str | None:
    """Why cached fine-tune values cannot be right (missing, non-finite, another split size), else None."""
    names = [f"{kind}.{split}" for kind in ("logits", "pooled") for split in SPLITS] + list(SCALARS)
    if any(name not in tensors for name in names):
        return "lack some fine-tune values"
    if not all(bool(torch.isfinite(value).all()) for value in tensors.values() if value.is_floating_point()):
        return "hold non-finite fine-tune values"
    if any(len(tensors[f"logits.{split}"]) != len(data.split(split)) for split in SPLITS):
        return "hold fine-tune logits for another split size"
    return None


def finetune_key(teacher: Teacher, data: DatasetSplits, config: FinetuneConfig) -> dict[str, object]:
    """The cache key parts: teacher, weights, dataset, split contents, preprocessing and the fine-tune knobs."""
    return {
        "kind": "teacher-finetune",
        "teacher": teacher.name,
        "weights": teacher.fingerprint,
        "dataset": data.name,
        "splits": {split: split_fingerprint(data.split(split)) for split in SPLITS},
        "preprocess": teacher.preprocess.with_size(data.config.image_size).as_dict(),
        "finetune": config.key(),
    }


def finetune_teacher(teacher: Teacher, data: DatasetSplits, config: FinetuneConfig, cache: FeatureCache,
                     device: torch.device) -> FinetuneResult:
    """The teacher fine-tuned on `data`'s (labeled) train rows, trained once per key and then read from the cache.

    Deterministic under `config.seed` on CPU; on CUDA the forward runs under bf16 autocast. The logits on the
    labeled train rows are in-sample KD targets (RepDistiller, DeiT); rows outside `labeled_limit` were never
    trained on.
    """
    tensors, event = cache.get_or_compute(finetune_key(teacher, data, config),
                                          lambda: _fit(teacher, data, config, device),
                                          lambda cached: _problem(cached, data))
    scalar = {name: float(tensors[name]) for name in SCALARS}
    return FinetuneResult(
        state={name[len("state."):]: value for name, value in tensors.items() if name.startswith("state.")},
        logits={split: tensors[f"logits.{split}"] for split in SPLITS},
        pooled={split: tensors[f"pooled.{split}"] for split in SPLITS},
        val_acc=scalar["val_acc"], test_acc=scalar["test_acc"], lr=scalar["lr"], epochs=int(scalar["epochs"]),
        train_acc=scalar["train_acc"], epoch_seconds=scalar["epoch_seconds"], seconds=event.teacher_seconds,
        hit=event.hit,
    )


def describe(result: FinetuneResult) -> str:
    """One line for logs: accuracies, chosen lr and epoch, timing."""
    return json.dumps({"val_acc": round(result.val_acc, 4), "test_acc": round(result.test_acc, 4), "lr": result.lr,
                       "epochs": result.epochs, "train_acc": round(result.train_acc, 4),
                       "epoch_s": round(result.epoch_seconds, 2), "hit": result.hit})


def finetune_config(config: DataConfig, train_rows: int | None = None) -> FinetuneConfig:
    """The fine-tune of a `data.teacher_reference: finetune` setting, from its data fields; with
    `finetune_budget: steps` each epoch takes the steps of a pass over `train_rows` (the whole train split)."""
    epoch_rows = train_rows if config.finetune_budget == "steps" else None
    return FinetuneConfig(unfreeze=config.finetune_unfreeze, lrs=(float(config.finetune_lr),),
                          max_epochs=int(config.finetune_epochs), labeled_limit=config.labeled_limit,
                          label_seed=config.label_seed(), epoch_rows=epoch_rows)


def finetuned_outputs(tuned: FinetuneResult, taps: Sequence[str]) -> TeacherOutputs:
    """The fine-tuned teacher's pooled features replace the frozen pass; no other tap is served from it."""
    if set(taps) - {POOLED}:
        raise BenchError(f"data.teacher_reference 'finetune' serves only the fine-tuned {POOLED!r} features "
                         f"and logits; {sorted(set(taps) - {POOLED})} are not kept: pick another method")
    return TeacherOutputs({split: {POOLED: tuned.pooled[split]} for split in SPLITS},
                          [CacheEvent(tuned.hit, tuned.seconds)])
