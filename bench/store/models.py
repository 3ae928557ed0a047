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

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    spec_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    study: Mapped[str] = mapped_column(String(200), index=True)
    teacher: Mapped[str] = mapped_column(String(200), index=True)
    student: Mapped[str] = mapped_column(String(200), index=True)
    student_kind: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(200), index=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    hparams: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    test_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    pct_of_teacher: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    method_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    inference_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inference_size_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    epoch_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_images_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_mem_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_pass_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cache_hits: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_misses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    torch_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    test_top5: Mapped[float | None] = mapped_column(Float, nullable=True)
    i2t_r1: Mapped[float | None] = mapped_column(Float, nullable=True)
    i2t_r5: Mapped[float | None] = mapped_column(Float, nullable=True)
    i2t_r10: Mapped[float | None] = mapped_column(Float, nullable=True)
    t2i_r1: Mapped[float | None] = mapped_column(Float, nullable=True)
    t2i_r5: Mapped[float | None] = mapped_column(Float, nullable=True)
    t2i_r10: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_recall: Mapped[float | None] = mapped_column(Float, nullable=True)
    skipped_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split_sizes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)  # issue 6: checkpoint resume
    kd_targets: Mapped[str | None] = mapped_column(String(32), nullable=True)  # issue 11: probe-oof-5, ...
    artifact_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # issue 14: the student's artifact
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)  # issue 14: inference cost
    throughput_ips: Mapped[float | None] = mapped_column(Float, nullable=True)
    macs: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_throughput_ips: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_macs: Mapped[float | None] = mapped_column(Float, nullable=True)
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)  # issue 29: compute matching
    images_seen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)  # issue 28: torch intra-op threads
    latency_spread: Mapped[float | None] = mapped_column(Float, nullable=True)  # issue 28: cost noise
    cost_load: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_latency_spread: Mapped[float | None] = mapped_column(Float, nullable=True)
    teacher_cost_load: Mapped[float | None] = mapped_column(Float, nullable=True)
    backbone_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    epoch_rows: Mapped[list[RunEpoch]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunEpoch.epoch"
    )


class RunEpoch(Base):
    """One epoch of one run: every loss term, val accuracy, wall time and train accuracy."""

    __tablename__ = "run_epochs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    loss_terms: Mapped[dict[str, float]] = mapped_column(JSON)
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float] = mapped_column(Float)
    train_acc: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the student has no class logits

    run: Mapped[Run] = relationship(back_populates="epoch_rows")
