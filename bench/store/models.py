"""SQLAlchemy 2.0 typed models: `runs` (one row per spec) and `run_epochs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of distill-bench's own tables (Optuna keeps its own beside them)."""


class Run(Base):
    """One experiment (spec) and its measured results; metrics are real columns for plain SQL."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, doc="row id (bench show ID)")
    spec_key: Mapped[str] = mapped_column(
        String(64), unique=True, index=True, doc="stable hash of the spec (every field that defines the run)")
    study: Mapped[str] = mapped_column(
        String(200), index=True, doc="grid or study name (a search's test re-runs: NAME/final)")
    teacher: Mapped[str] = mapped_column(String(200), index=True, doc="teacher name (registry)")
    student: Mapped[str] = mapped_column(
        String(200), index=True, doc="student name; the reference cell: linear-probe, zero-shot or fine-tuned")
    student_kind: Mapped[str] = mapped_column(
        String(32), doc="head (reads teacher features) or standalone (reads images)")
    method: Mapped[str] = mapped_column(
        String(200), index=True, doc="distillation method, scratch, or the reference cell's kind")
    dataset: Mapped[str] = mapped_column(String(200), index=True, doc="dataset name (registry)")
    seed: Mapped[int] = mapped_column(Integer, doc="the student's seed (initialisation, data order, dropout)")
    epochs: Mapped[int] = mapped_column(Integer, doc="epoch budget")
    hparams: Mapped[dict[str, Any]] = mapped_column(JSON, doc="every hyperparameter the run read (JSON)")
    data_config: Mapped[dict[str, Any]] = mapped_column(JSON, doc="the data: block (JSON)")
    status: Mapped[str] = mapped_column(String(16), index=True, doc="running, done or failed")
    error: Mapped[str | None] = mapped_column(Text, nullable=True, doc="first line of the failure (failed runs)")
    test_acc: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="top-1 accuracy on the test split, last epoch (fraction 0-1)")
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True, doc="top-1 accuracy on val, last epoch")
    teacher_acc: Mapped[float | None] = mapped_column(Float, nullable=True, doc="the teacher reference's test accuracy")
    pct_of_teacher: Mapped[float | None] = mapped_column(Float, nullable=True, doc="100 x test_acc / teacher_acc")
    teacher_reference: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="what the reference is: linear probe, zero-shot head, fine-tune")
    params: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="the student's own parameters")
    method_params: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="the method's trainable parts (projections, embeddings)")
    size_mb: Mapped[float | None] = mapped_column(Float, nullable=True, doc="the student's weights in MB (float32)")
    inference_params: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="parameters inference needs (a head student: with its teacher backbone)")
    inference_size_mb: Mapped[float | None] = mapped_column(Float, nullable=True, doc="MB inference needs")
    epoch_seconds: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="mean wall time of one training epoch")
    train_images_per_s: Mapped[float | None] = mapped_column(Float, nullable=True, doc="training images per second")
    peak_mem_mb: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="peak memory of the run (CUDA: allocated; CPU: RSS growth)")
    teacher_pass_s: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="seconds of teacher pass the run paid or reused")
    teacher_view_s: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="teacher seconds on augmented views (data.teacher_views cached: the K passes, "
                                  "paid once per sweep; online: every step's forward); 0 for fixed")
    teacher_view_images: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="images the teacher labelled for those views (cached: K x train rows)")
    cache_hits: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="teacher-output cache hits")
    cache_misses: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="teacher-output cache misses")
    device: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="device name it trained on")
    torch_version: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="torch version")
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="git commit of the code")
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="Optuna trial number")
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, doc="start time (UTC)")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, doc="finish time (UTC)")
    test_top5: Mapped[float | None] = mapped_column(Float, nullable=True, doc="top-5 accuracy on test")
    i2t_r1: Mapped[float | None] = mapped_column(Float, nullable=True, doc="image-to-text Recall@1 (retrieval)")
    i2t_r5: Mapped[float | None] = mapped_column(Float, nullable=True, doc="image-to-text Recall@5")
    i2t_r10: Mapped[float | None] = mapped_column(Float, nullable=True, doc="image-to-text Recall@10")
    t2i_r1: Mapped[float | None] = mapped_column(Float, nullable=True, doc="text-to-image Recall@1")
    t2i_r5: Mapped[float | None] = mapped_column(Float, nullable=True, doc="text-to-image Recall@5")
    t2i_r10: Mapped[float | None] = mapped_column(Float, nullable=True, doc="text-to-image Recall@10")
    mean_recall: Mapped[float | None] = mapped_column(Float, nullable=True)
    skipped_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split_sizes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resumed_from_epoch: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="the epoch a checkpoint resumed from")
    kd_targets: Mapped[str | None] = mapped_column(
        String(32), nullable=True, doc="kind of KD targets: probe-oof-5, probe-in-sample, zero-shot, finetune")
    artifact_path: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="the trained student's safetensors artifact")
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="sha256 of the artifact file")
    latency_ms: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="deployable model's batch-1 median latency in ms, on the run's device")
    throughput_ips: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="deployable model's images/s at a larger batch")
    macs: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="multiply-accumulates per image of the deployable model")
    teacher_latency_ms: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="the teacher's batch-1 median latency, same device")
    teacher_throughput_ips: Mapped[float | None] = mapped_column(Float, nullable=True, doc="the teacher's images/s")
    teacher_macs: Mapped[float | None] = mapped_column(Float, nullable=True, doc="the teacher's MACs per image")
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True, doc="teacher_latency_ms / latency_ms")
    train_steps: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="optimizer steps over the whole run")
    images_seen: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="training images forwarded over the whole run")
    threads: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="torch intra-op threads the run trained with")
    latency_spread: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="interquartile range / median of the batch-1 runs")
    cost_load: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="1-minute load per CPU when the latency was measured")
    teacher_latency_spread: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="interquartile range / median of the teacher's batch-1 runs")
    teacher_cost_load: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="load per CPU when the teacher was timed")
    backbone_latency_ms: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="the teacher pass a head student's latency includes")
    bundle_size: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="cells in the stacked model it trained in (--bundle auto; NULL: the single-run "
                                    "loop); epoch_seconds is the bundle's time divided by it")

    epoch_rows: Mapped[list[RunEpoch]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunEpoch.epoch"
    )


class RunEpoch(Base):
    """One epoch of one run: every loss term, val accuracy, wall time and train accuracy."""

    __tablename__ = "run_epochs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, doc="row id")
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True, doc="the run (runs.id)")
    epoch: Mapped[int] = mapped_column(Integer, doc="epoch number, from 0 (bench show and plots count from 1)")
    train_loss: Mapped[float] = mapped_column(Float, doc="weighted sum of the loss terms, mean over the epoch")
    loss_terms: Mapped[dict[str, float]] = mapped_column(
        JSON, doc="each unweighted loss term, mean over the epoch (JSON)")
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True, doc="val accuracy after the epoch")
    seconds: Mapped[float] = mapped_column(Float, doc="wall time of the epoch")
    train_acc: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the student has no class logits

    run: Mapped[Run] = relationship(back_populates="epoch_rows")
