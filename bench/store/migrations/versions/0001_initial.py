"""Initial schema: runs and run_epochs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("spec_key", sa.String(64), nullable=False),
        sa.Column("study", sa.String(200), nullable=False),
        sa.Column("teacher", sa.String(200), nullable=False),
        sa.Column("student", sa.String(200), nullable=False),
        sa.Column("student_kind", sa.String(32), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("hparams", sa.JSON(), nullable=False),
        sa.Column("data_config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("test_acc", sa.Float(), nullable=True),
        sa.Column("val_acc", sa.Float(), nullable=True),
        sa.Column("teacher_acc", sa.Float(), nullable=True),
        sa.Column("pct_of_teacher", sa.Float(), nullable=True),
        sa.Column("teacher_reference", sa.String(64), nullable=True),
        sa.Column("params", sa.Integer(), nullable=True),
        sa.Column("method_params", sa.Integer(), nullable=True),
        sa.Column("size_mb", sa.Float(), nullable=True),
        sa.Column("inference_params", sa.Integer(), nullable=True),
        sa.Column("inference_size_mb", sa.Float(), nullable=True),
        sa.Column("epoch_seconds", sa.Float(), nullable=True),
        sa.Column("train_images_per_s", sa.Float(), nullable=True),
        sa.Column("peak_mem_mb", sa.Float(), nullable=True),
        sa.Column("teacher_pass_s", sa.Float(), nullable=True),
        sa.Column("cache_hits", sa.Integer(), nullable=True),
        sa.Column("cache_misses", sa.Integer(), nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("torch_version", sa.String(64), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    for column in ("spec_key",):
        op.create_index(f"ix_runs_{column}", "runs", [column], unique=True)
    for column in ("study", "teacher", "student", "method", "dataset", "status"):
        op.create_index(f"ix_runs_{column}", "runs", [column])
    op.create_table(
        "run_epochs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=False),
        sa.Column("loss_terms", sa.JSON(), nullable=False),
        sa.Column("val_acc", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_run_epochs_run_id", "run_epochs", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_epochs_run_id", table_name="run_epochs")
    op.drop_table("run_epochs")
    for column in ("spec_key", "study", "teacher", "student", "method", "dataset", "status"):
        op.drop_index(f"ix_runs_{column}", table_name="runs")
    op.drop_table("runs")
