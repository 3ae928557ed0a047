"""Plain frozen records that leave the store (ORM rows never do)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


def _is_bad_float(value: object) -> bool:
    """True for a NaN or infinite number (numpy scalars too); None and strings are never 'non-finite'."""
    return isinstance(value, numbers.Real) and not math.isfinite(value)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's loss terms (unweighted means), total loss, val accuracy, seconds and train accuracy."""

    epoch: int
    train_loss: float
    loss_terms: dict[str, float]
    val_acc: float | None
    seconds: float
    train_acc: float | None = None  # running top-1 over the epoch's training batches; None without class logits

    def non_finite_fields(self) -> list[str]:
        """Names of this epoch's NaN or infinite numbers (loss terms as `loss_terms.<name>`)."""
        names = [f.name for f in fields(self) if _is_bad_float(getattr(self, f.name))]
        return names + [f"loss_terms.{name}" for name, value in (self.loss_terms or {}).items()
                        if _is_bad_float(value)]


@dataclass(frozen=True)
class RunRecord:
    """One run as stored in `runs`, with its epochs."""

    spec_key: str
    study: str
    teacher: str
    student: str
    student_kind: str
    method: str
    dataset: str
    seed: int
    epochs: int
    hparams: dict[str, Any]
    data_config: dict[str, Any]
    status: str
    error: str | None = None
    test_acc: float | None = None
    val_acc: float | None = None
    teacher_acc: float | None = None
    pct_of_teacher: float | None = None
    teacher_reference: str | None = None
    params: int | None = None
    method_params: int | None = None
    size_mb: float | None = None
    inference_params: int | None = None
    inference_size_mb: float | None = None
    epoch_seconds: float | None = None
    train_images_per_s: float | None = None
    peak_mem_mb: float | None = None
    teacher_pass_s: float | None = None
    teacher_view_s: float | None = None
    teacher_view_images: int | None = None
    cache_hits: int | None = None
    cache_misses: int | None = None
    device: str | None = None
    torch_version: str | None = None
    git_commit: str | None = None
    trial_number: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    test_top5: float | None = None
    i2t_r1: float | None = None
    i2t_r5: float | None = None
    i2t_r10: float | None = None
    t2i_r1: float | None = None
    t2i_r5: float | None = None
    t2i_r10: float | None = None
    mean_recall: float | None = None  # mean of the six recalls (image-text runs)
    skipped_images: int | None = None  # corrupt images left out under skip_bad
    split_sizes: dict[str, Any] | None = None  # {"train", "val", "test", "split_seed", "val_fraction"}
    resumed_from_epoch: int | None = None  # epochs restored from a checkpoint (a dead worker's run)
    kd_targets: str | None = None  # the teacher logits KD read: probe-oof-<K>, probe-in-sample or zero-shot
    artifact_path: str | None = None  # issue 14: where the trained student's safetensors artifact lies
    artifact_sha256: str | None = None  # issue 14: sha256 of that file, checked by `bench eval`
    latency_ms: float | None = None  # issue 14: deployable model, batch 1, median ms on the run's device
    throughput_ips: float | None = None  # issue 14: deployable model, images/s at a larger batch
    macs: float | None = None  # issue 14: multiply-accumulates per image of the deployable model
    teacher_latency_ms: float | None = None  # issue 14: the teacher (+ its reference head), same device and input
    teacher_throughput_ips: float | None = None
    teacher_macs: float | None = None
    speedup: float | None = None  # issue 14: teacher_latency_ms / latency_ms
    train_steps: int | None = None  # issue 29: optimizer steps of the whole run (compute matching)
    images_seen: int | None = None  # issue 29: training images forwarded over the whole run
    threads: int | None = None  # issue 28: torch intra-op threads the run trained with (--threads, BENCH_THREADS)
    latency_spread: float | None = None  # issue 28: interquartile range / median of latency_ms's batch-1 runs
    cost_load: float | None = None  # issue 28: 1-minute load average per CPU while latency_ms was measured
    teacher_latency_spread: float | None = None  # the same for teacher_latency_ms
    teacher_cost_load: float | None = None
    backbone_latency_ms: float | None = None  # issue 28: a head student's teacher pass, included in latency_ms
    bundle_size: int | None = None  # issue 28: cells in the stacked model it trained in; None: the single-run loop
    epoch_records: tuple[EpochRecord, ...] = field(default=(), compare=False)

    @classmethod
    def column_names(cls) -> list[str]:
        """The fields that are columns of `runs` (everything but the epochs)."""
        return [f.name for f in fields(cls) if f.name != "epoch_records"]

    def non_finite_fields(self) -> list[str]:
        """Every NaN or infinite number of the run and its epochs (`epoch_records[i].<name>`): none may be stored."""
        names = [name for name in self.column_names() if _is_bad_float(getattr(self, name))]
        for index, epoch in enumerate(self.epoch_records):
            names += [f"epoch_records[{index}].{name}" for name in epoch.non_finite_fields()]
        return names
